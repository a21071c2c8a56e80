package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nagare/nagare/pkg/join"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/pki"
	"github.com/nagare/nagare/pkg/server"
)

// tokenCommand is `nagare-server token create`: like `kubeadm token
// create` it works on the server's machine with the server's own
// credentials (DATA-DIR/pki), through etcd, so it needs no API login and
// works while the API is down.
func tokenCommand(args []string) int {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(os.Stderr, "usage: nagare-server token create [--data-dir DIR] [--ttl 24h] [--uses N] [--description TEXT]")
		return 2
	}
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./nagare-data", "the server's data directory")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long the token admits agents (kubeadm's default)")
	uses := fs.Int("uses", 0, "how many agents it admits (0: any number until it expires)")
	desc := fs.String("description", "", "what the token is for")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	tok, err := createToken(*dataDir, *ttl, *uses, *desc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nagare-server token create: %v\n", err)
		return 1
	}
	fmt.Println(tok)
	return 0
}

func createToken(dataDir string, ttl time.Duration, uses int, desc string) (string, error) {
	dir := filepath.Join(dataDir, "pki")
	ca, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		return "", fmt.Errorf("no CA in %s (is the server running with TLS?): %w", dir, err)
	}
	caKey, err := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	if err != nil {
		return "", err
	}
	authority, err := pki.ParseCA(ca, caKey)
	if err != nil {
		return "", err
	}
	ec, err := server.ReadClientFile(dataDir)
	if err != nil {
		return "", err
	}
	tlsConfig, err := ec.TLS()
	if err != nil {
		return "", fmt.Errorf("the server's etcd credentials: %w", err)
	}
	st, err := nsdb.Dial(ec.Endpoints, tlsConfig)
	if err != nil {
		return "", err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	svc, err := join.New(ctx, st, join.Options{CA: authority})
	if err != nil {
		return "", err
	}
	t, err := svc.CreateToken(ctx, ttl, uses, desc)
	if err != nil {
		return "", err
	}
	return t.String(), nil
}
