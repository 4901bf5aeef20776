module github.com/elasticjob/elasticjob/hack/kind/runc-capshim

go 1.22
