package ui_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/server"
	"github.com/nagare/nagare/pkg/server/servertest"
)

// env is a real nagare-server (in this process, over a real etcd) with
// password authentication; callers log in through its identity API.
type env struct {
	t     *testing.T
	ctx   context.Context
	srv   *server.Server
	base  string
	admin string // the admin's token
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv, base := servertest.Start(t)
	e := &env{t: t, ctx: context.Background(), srv: srv, base: base}
	e.admin = servertest.Login(t, base, "admin", servertest.AdminPassword, "admin")
	return e
}

func (e *env) login(user, password, project string) string {
	e.t.Helper()
	return servertest.Login(e.t, e.base, user, password, project)
}

// member creates a project and a user with role member in it, and returns
// the user's token and the project's id.
func (e *env) member(name string) (token, projectID string) {
	e.t.Helper()
	var p struct{ Project struct{ ID string } }
	e.must("POST", "/identity/v3/projects", e.admin, `{"project": {"name": "`+name+`"}}`, &p)
	var u struct{ User struct{ ID string } }
	e.must("POST", "/identity/v3/users", e.admin, `{"user": {"name": "`+name+`-user", "password": "pw-`+name+`", "default_project_id": "`+p.Project.ID+`"}}`, &u)
	var roles struct{ Roles []struct{ ID string } }
	e.must("GET", "/identity/v3/roles?name=member", e.admin, "", &roles)
	if len(roles.Roles) != 1 {
		e.t.Fatalf("role member: %+v", roles)
	}
	e.must("PUT", "/identity/v3/projects/"+p.Project.ID+"/users/"+u.User.ID+"/roles/"+roles.Roles[0].ID, e.admin, "", nil)
	return e.login(name+"-user", "pw-"+name, name), p.Project.ID
}

// do sends a request with a token (none when "") and returns the status
// and the body.
func (e *env) do(method, path, token, body string, hdr ...string) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// must is do that fails the test unless the answer is 2xx, decoding it
// into out when not nil.
func (e *env) must(method, path, token, body string, out any) {
	e.t.Helper()
	st, b := e.do(method, path, token, body)
	if st/100 != 2 {
		e.t.Fatalf("%s %s: %d %s", method, path, st, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

// create POSTs a Neutron resource and returns its id.
func (e *env) create(token, collection, key, body string) string {
	e.t.Helper()
	var m map[string]map[string]any
	e.must("POST", "/v2.0/"+collection, token, `{"`+key+`": `+body+`}`, &m)
	id, _ := m[key]["id"].(string)
	if id == "" {
		e.t.Fatalf("POST /v2.0/%s answered no id: %v", collection, m)
	}
	return id
}

// view is the dashboard's topology answer.
type view struct {
	Rev     int64           `json:"rev"`
	Admin   bool            `json:"admin"`
	Objects []wire          `json:"objects"`
	Alive   map[string]bool `json:"alive"`
}

type wire struct {
	Kind   string         `json:"kind"`
	Object map[string]any `json:"object"`
}

func (v *view) ids(kind string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, w := range v.Objects {
		if w.Kind == kind {
			out[w.Object["id"].(string)] = w.Object
		}
	}
	return out
}

func (e *env) topology(token string) *view {
	e.t.Helper()
	var v view
	e.must("GET", "/ui/api/topology", token, "", &v)
	return &v
}

// topologyWhen reads the view until ready holds: the dashboard follows the
// NSDB's watch, a moment behind the writes.
func (e *env) topologyWhen(token string, ready func(*view) bool) *view {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		v := e.topology(token)
		if ready(v) || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sseEvent is one Server-Sent Event as read off the wire.
type sseEvent struct {
	Name string
	Data string
}

// stream opens /ui/api/events with token and delivers its events on the
// returned channel until the test ends.
func (e *env) stream(token string) <-chan sseEvent {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	req, err := http.NewRequestWithContext(ctx, "GET", e.base+"/ui/api/events", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		e.t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 64)
	done := make(chan struct{})
	e.t.Cleanup(func() { cancel(); resp.Body.Close(); <-done })
	go func() {
		defer close(done)
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Name != "" || ev.Data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.Name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if ev.Data != "" {
					ev.Data += "\n"
				}
				ev.Data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

// next returns the next event, failing the test after timeout.
func next(t *testing.T, ch <-chan sseEvent, timeout time.Duration) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %v", timeout)
	}
	return sseEvent{}
}
