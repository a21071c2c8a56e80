package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"

	"github.com/nagare/nagare/pkg/server"
)

// apiServer is a real nagare-server for the control-plane benchmarks:
// embedded etcd with fsync in a temporary directory, and password
// authentication (the production default) or none.
type apiServer struct {
	restClient
	srv      *server.Server
	dir      string
	password string // admin's; "" without authentication
}

// restClient calls a nagare-server's HTTP APIs.
type restClient struct {
	base   string // http://host:port
	client *http.Client
}

func newRESTClient(base string) restClient {
	return restClient{base: base, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
}

func startAPIServer(ctx context.Context, auth bool) (*apiServer, error) {
	dir, err := os.MkdirTemp("", "nagare-bench-api")
	if err != nil {
		return nil, err
	}
	a := &apiServer{dir: dir}
	cfg := server.Config{
		DataDir: dir, Listen: "127.0.0.1:0",
		EtcdListen: "http://127.0.0.1:0", EtcdPeerURL: "http://127.0.0.1:0",
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if auth {
		pwb := make([]byte, 12)
		_, _ = rand.Read(pwb)
		a.password = hex.EncodeToString(pwb)
		cfg.Auth, cfg.AdminPassword = server.AuthPassword, a.password
	}
	if a.srv, err = server.Start(ctx, cfg); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	a.restClient = newRESTClient("http://" + a.srv.Addr())
	return a, nil
}

func (a *apiServer) Close() {
	a.srv.Close()
	os.RemoveAll(a.dir)
}

// login returns a token of admin in project admin and the project's id
// ("" and "" without authentication).
func (a *apiServer) login(ctx context.Context) (token, project string, err error) {
	if a.password == "" {
		return "", "", nil
	}
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"id":"default"},"password":"` +
		a.password + `"}}},"scope":{"project":{"name":"admin","domain":{"id":"default"}}}}}`
	var doc struct {
		Token struct {
			Project struct{ ID string }
		}
	}
	hdr, err := a.call(ctx, "", "POST", "/identity/v3/auth/tokens", body, http.StatusCreated, &doc)
	if err != nil {
		return "", "", fmt.Errorf("login: %w", err)
	}
	return hdr.Get("X-Subject-Token"), doc.Token.Project.ID, nil
}

// rawBody, given to call as out, receives the answer's bytes undecoded.
type rawBody []byte

// call makes one request with token tok (none if empty), wants status
// want, and decodes the answer into out (if not nil).
func (a *restClient) call(ctx context.Context, tok, method, path, body string, want int, out any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, bytes.NewBufferString(body))
	if err != nil {
		return nil, err
	}
	if tok != "" {
		req.Header.Set("X-Auth-Token", tok)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if raw, ok := out.(*rawBody); ok {
		*raw, err = io.ReadAll(resp.Body)
		return resp.Header, err
	}
	if out != nil {
		return resp.Header, json.NewDecoder(resp.Body).Decode(out)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.Header, err
}
