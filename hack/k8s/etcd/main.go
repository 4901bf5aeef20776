// Command etcd: etcd's server main, built from the go.etcd.io/etcd/server/v3 module at the pinned version.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
