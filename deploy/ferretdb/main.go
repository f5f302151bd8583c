// Command ferretdb runs an embedded FerretDB 1.24.2 (MongoDB wire protocol) with the SQLite backend.
//
// `go install github.com/FerretDB/FerretDB/cmd/ferretdb` panics on a missing version file, so the
// project embeds the library instead. Built and started by orderflow/stack.py.
package main

import (
	"context"
	"flag"
	"log"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP listen address (empty disables)")
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite URI of the data directory (must end with /)")
	tlsAddr := flag.String("tls-listen-addr", "", "TLS listen address (empty disables)")
	tlsCert := flag.String("tls-cert-file", "", "TLS server certificate file")
	tlsKey := flag.String("tls-key-file", "", "TLS server key file")
	tlsCA := flag.String("tls-ca-file", "", "TLS root CA file (optional)")
	flag.Parse()

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP: *listenAddr, TLS: *tlsAddr, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, TLSCAFile: *tlsCA,
		},
		Handler:   "sqlite",
		SQLiteURL: *sqliteURL,
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	log.Printf("ferretdb: listening on %s (sqlite %s)", *listenAddr, *sqliteURL)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb: %v", err)
	}
	log.Printf("ferretdb: stopped")
}
