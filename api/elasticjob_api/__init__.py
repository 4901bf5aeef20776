"""ElasticJob API models: the one source of truth for the CRD, shared by operator and launcher."""
