"""The ElasticJob kopf operator."""
