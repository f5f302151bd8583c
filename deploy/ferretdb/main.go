// Command ferretdb runs an embedded FerretDB 1.24.2 (MongoDB wire protocol) with the PostgreSQL
// (default) or SQLite backend.
//
// `go install github.com/FerretDB/FerretDB/cmd/ferretdb` panics on a missing version file, so the
// project embeds the library instead. Built and started by orderflow/dev/stack.py.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	_ "net/http/pprof" // -pprof-addr serves /debug/pprof/ (profiles of the store under load)
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listenAddr := flag.String("listen-addr", "127.0.0.1:27017", "TCP listen address (empty disables)")
	handler := flag.String("handler", "postgresql", "backend handler: postgresql or sqlite")
	postgresqlURL := flag.String(
		"postgresql-url", "postgres://postgres@127.0.0.1:5433/ferretdb", "PostgreSQL URL for -handler postgresql",
	)
	sqliteURL := flag.String("sqlite-url", "file:data/", "SQLite URI of the data directory (must end with /)")
	tlsAddr := flag.String("tls-listen-addr", "", "TLS listen address (empty disables)")
	tlsCert := flag.String("tls-cert-file", "", "TLS server certificate file")
	tlsKey := flag.String("tls-key-file", "", "TLS server key file")
	tlsCA := flag.String("tls-ca-file", "", "TLS root CA file (optional)")
	pprofAddr := flag.String("pprof-addr", "", "serve Go's /debug/pprof/ on this address (empty: off)")
	flag.Parse()

	if *pprofAddr != "" {
		go func() { log.Printf("ferretdb: pprof: %v", http.ListenAndServe(*pprofAddr, nil)) }()
	}

	var backend string
	switch *handler {
	case "postgresql":
		backend = *postgresqlURL
	case "sqlite":
		backend = *sqliteURL
	default:
		log.Fatalf("ferretdb: unknown -handler %q (want postgresql or sqlite)", *handler)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP: *listenAddr, TLS: *tlsAddr, TLSCertFile: *tlsCert, TLSKeyFile: *tlsKey, TLSCAFile: *tlsCA,
		},
		Handler:       *handler,
		PostgreSQLURL: *postgresqlURL,
		SQLiteURL:     *sqliteURL,
	})
	if err != nil {
		log.Fatalf("ferretdb: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	log.Printf("ferretdb: listening on %s (%s %s)", *listenAddr, *handler, backend)
	if err := f.Run(ctx); err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb: %v", err)
	}
	log.Printf("ferretdb: stopped")
}
