package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Monitor is how members are checked: model.HealthMonitor in durations.
type Monitor struct {
	Type           string // "tcp" or "http"
	Delay          time.Duration
	Timeout        time.Duration
	MaxRetries     int // successes to go up
	MaxRetriesDown int // failures to go down
	HTTPMethod     string
	URLPath        string
	Codes          Codes
}

// DialFunc opens a connection, like net.Dialer.DialContext; the agent's
// dials from the health-check namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Check runs one check of the member at addr and returns nil when it
// passes. The whole check, connect included, is bounded by m.Timeout.
func Check(ctx context.Context, m *Monitor, dial DialFunc, addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	conn, err := dial(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("connect %s: %w", addr, err)
	}
	defer conn.Close()
	if m.Type != "http" {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return checkHTTP(ctx, m, conn, addr)
}

// errConnUsed keeps the transport from dialing a second connection.
var errConnUsed = errors.New("health: connection already used")

func checkHTTP(ctx context.Context, m *Monitor, conn net.Conn, addr netip.AddrPort) error {
	method := m.HTTPMethod
	if method == "" {
		method = http.MethodGet
	}
	path := m.URLPath
	if path == "" {
		path = "/"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr.String()+path, nil)
	if err != nil {
		return fmt.Errorf("url_path %q: %w", m.URLPath, err)
	}
	req.Header.Set("User-Agent", "nagare-health-monitor")
	req.Close = true
	// The transport uses the connection already open (one request per
	// check, no pooling, no proxy from the environment).
	used := false
	tr := &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if used {
				return nil, errConnUsed
			}
			used = true
			return conn, nil
		},
		DisableKeepAlives: true,
		Proxy:             nil,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is a status like any other
	}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if !m.Codes.Match(resp.StatusCode) {
		return fmt.Errorf("%s %s: status %d not expected", method, req.URL, resp.StatusCode)
	}
	return nil
}
