package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sync"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/api/native"
	"github.com/nagare/nagare/pkg/model"
)

// fakeAPI is a working in-memory implementation of the native REST API
// (/api/v1), in the spirit of wireguard-go's bindtest: it stores objects and
// runs the model's own validation and write rules, so the engine is tested
// against real behaviour (defaults, MAC assignment, rule positions, linked
// peers, cascades) rather than scripted answers. It is not the server: no
// etcd, no transactions, no concurrency control beyond one mutex.
type fakeAPI struct {
	mu     sync.Mutex
	objs   map[*model.Kind][]model.Object // creation order
	alive  map[string]bool                // host id → agent lease held
	status map[string][]byte              // host id → its agent's datapath status
	// lastTrace is the last trace request; traceAnswer, when set, is the
	// answer to every trace, which otherwise echoes the request.
	lastTrace   *native.TraceRequest
	traceAnswer *native.TraceResponse
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{objs: map[*model.Kind][]model.Object{}, alive: map[string]bool{}, status: map[string][]byte{}}
}

type httpError struct {
	status int
	field  string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func asHTTP(err error) *httpError {
	var he *httpError
	var fe *model.FieldError
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &fe):
		return &httpError{400, fe.Field, fe.Error()}
	case errors.Is(err, model.ErrConflict):
		return &httpError{409, "", err.Error()}
	case errors.Is(err, model.ErrNotFound):
		return &httpError{404, "", err.Error()}
	}
	return &httpError{500, "", err.Error()}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/{plural}", f.handle(f.list))
	mux.HandleFunc("POST /api/v1/{plural}", f.handle(f.create))
	mux.HandleFunc("GET /api/v1/{plural}/{id}", f.handle(f.get))
	mux.HandleFunc("PUT /api/v1/{plural}/{id}", f.handle(f.update))
	mux.HandleFunc("PATCH /api/v1/{plural}/{id}", f.handle(f.update))
	mux.HandleFunc("DELETE /api/v1/{plural}/{id}", f.handle(f.remove))
	mux.HandleFunc("GET /api/v1/{pplural}/{pid}/{plural}", f.handle(f.list))
	mux.HandleFunc("POST /api/v1/{pplural}/{pid}/{plural}", f.handle(f.create))
	mux.HandleFunc("GET /api/v1/hosts/{pid}/bindings", f.handle(f.bindings))
	mux.HandleFunc("POST /api/v1/hosts/{pid}/bindings", f.handle(f.bind))
	mux.HandleFunc("DELETE /api/v1/hosts/{pid}/bindings/{iface}", f.handle(f.unbind))
	mux.HandleFunc("GET /api/v1/hosts/{pid}/datapath", f.handle(f.datapath))
	mux.HandleFunc("POST /api/v1/trace", f.handle(f.trace))
	mux.ServeHTTP(w, r)
}

func (f *fakeAPI) handle(h func(*http.Request, []byte) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		status, out, err := h(r, body)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			he := asHTTP(err)
			w.WriteHeader(he.status)
			e := map[string]any{"code": he.status, "type": http.StatusText(he.status), "message": he.msg}
			if he.field != "" {
				e["field"] = he.field
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
			return
		}
		w.WriteHeader(status)
		if out != nil {
			_ = json.NewEncoder(w).Encode(out)
		}
	}
}

func kindOf(r *http.Request) (*model.Kind, error) {
	k := model.KindByName(r.PathValue("plural"))
	if k == nil || k.Plural != r.PathValue("plural") {
		return nil, &httpError{404, "", "no collection " + r.PathValue("plural")}
	}
	return k, nil
}

// parentFor resolves /{pplural}/{pid}/… to the child's parent field and id.
func (f *fakeAPI) parentFor(r *http.Request, k *model.Kind) (*model.Field, string, error) {
	if r.PathValue("pplural") == "" {
		return nil, "", nil
	}
	pk := model.KindByName(r.PathValue("pplural"))
	if pk == nil {
		return nil, "", &httpError{404, "", "no collection " + r.PathValue("pplural")}
	}
	if _, err := f.Get(pk, r.PathValue("pid")); err != nil {
		return nil, "", err
	}
	for _, pf := range k.ParentFields() {
		if pf.Ref == pk.Name {
			return pf, r.PathValue("pid"), nil
		}
	}
	return nil, "", &httpError{404, "", k.Plural + " are not children of " + pk.Plural}
}

// view is the object as the API shows it, with derived fields filled in.
func (f *fakeAPI) view(o model.Object) model.Object {
	c := model.Clone(o)
	switch x := c.(type) {
	case *model.Rule:
		if ch, err := f.Get(model.ChainKind, x.ChainID); err == nil {
			x.Position = model.RulePosition(ch.(*model.Chain), x.ID)
		}
	case *model.Host:
		x.Alive = f.alive[x.ID]
	case *model.PoolMember:
		// Like the server: no monitor on the pool, no status written.
		if p, err := f.Get(model.PoolKind, x.PoolID); err == nil && p.(*model.Pool).HealthMonitorID == "" {
			x.Status = model.MemberNoMonitor
		}
	}
	return c
}

func (f *fakeAPI) list(r *http.Request, _ []byte) (int, any, error) {
	k, err := kindOf(r)
	if err != nil {
		return 0, nil, err
	}
	pf, pid, err := f.parentFor(r, k)
	if err != nil {
		return 0, nil, err
	}
	out := []model.Object{}
	for _, o := range f.objs[k] {
		if pf != nil && pf.Text(o) != pid {
			continue
		}
		keep := true
		for name, vals := range r.URL.Query() {
			if fl := k.Field(name); fl == nil || fl.Text(o) != vals[0] {
				keep = false
			}
		}
		if keep {
			out = append(out, f.view(o))
		}
	}
	return 200, out, nil
}

func (f *fakeAPI) get(r *http.Request, _ []byte) (int, any, error) {
	k, err := kindOf(r)
	if err != nil {
		return 0, nil, err
	}
	o, err := f.Get(k, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return 200, f.view(o), nil
}

func (f *fakeAPI) create(r *http.Request, body []byte) (int, any, error) {
	k, err := kindOf(r)
	if err != nil {
		return 0, nil, err
	}
	pf, pid, err := f.parentFor(r, k)
	if err != nil {
		return 0, nil, err
	}
	o := k.New()
	if err := model.Decode(k, body, o, false); err != nil {
		return 0, nil, err
	}
	if pf != nil {
		pf.Value(o).SetString(pid)
	}
	o.GetMeta().ID = newUUID()
	if err := f.write(nil, o); err != nil {
		return 0, nil, err
	}
	return 201, f.view(o), nil
}

// Seed stores an object as an agent would, bypassing the API (hosts).
func (f *fakeAPI) Seed(o model.Object, alive bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o.GetMeta().ID = newUUID()
	f.alive[o.GetMeta().ID] = alive
	f.objs[model.KindOf(o)] = append(f.objs[model.KindOf(o)], o)
}

func (f *fakeAPI) update(r *http.Request, body []byte) (int, any, error) {
	k, err := kindOf(r)
	if err != nil {
		return 0, nil, err
	}
	old, err := f.Get(k, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	o := model.Clone(old)
	if err := model.Decode(k, body, o, false); err != nil {
		return 0, nil, err
	}
	if err := f.write(old, o); err != nil {
		return 0, nil, err
	}
	return 200, f.view(o), nil
}

// write validates and stores o (a create when old is nil), running the
// model's rules and the store's reference and uniqueness checks.
func (f *fakeAPI) write(old, o model.Object) error {
	model.ApplyDefaults(o)
	if err := model.Validate(o); err != nil {
		return err
	}
	k := model.KindOf(o)
	for _, fl := range k.Refs() {
		if fl.ReadOnly {
			continue
		}
		for _, id := range fl.RefIDs(o) {
			if _, err := f.Get(model.KindByName(fl.Ref), id); err != nil {
				return &model.FieldError{Field: fl.JSON, Msg: fmt.Sprintf("%s %s does not exist", fl.Ref, id)}
			}
		}
	}
	for _, fl := range k.Uniques() {
		if fl.Value(o).IsZero() {
			continue
		}
		scope := ""
		if fl.Scope != "" {
			scope = k.Field(fl.Scope).Text(o)
		}
		if owner, _ := f.UniqueOwner(k, fl, scope, fl.Text(o)); owner != "" && owner != o.GetMeta().ID {
			return model.Conflictf("%s %q is already used by %s %s", fl.JSON, fl.Text(o), k.Name, owner)
		}
	}
	var err error
	if old == nil {
		err = model.PrepareCreate(f, o)
	} else {
		err = model.PrepareUpdate(f, old, o)
	}
	if err != nil {
		return err
	}
	return f.Put(o)
}

func (f *fakeAPI) remove(r *http.Request, _ []byte) (int, any, error) {
	k, err := kindOf(r)
	if err != nil {
		return 0, nil, err
	}
	return 204, nil, f.Delete(k, r.PathValue("id"))
}

type binding struct {
	HostID        string `json:"host_id"`
	InterfaceName string `json:"interface_name"`
	PortID        string `json:"port_id"`
}

func (f *fakeAPI) bindings(r *http.Request, _ []byte) (int, any, error) {
	if _, err := f.Get(model.HostKind, r.PathValue("pid")); err != nil {
		return 0, nil, err
	}
	out := []binding{}
	for _, o := range f.objs[model.PortKind] {
		if p := o.(*model.Port); p.HostID == r.PathValue("pid") {
			out = append(out, binding{p.HostID, p.InterfaceName, p.ID})
		}
	}
	return 200, out, nil
}

func (f *fakeAPI) bind(r *http.Request, body []byte) (int, any, error) {
	var b binding
	if err := json.Unmarshal(body, &b); err != nil {
		return 0, nil, &httpError{400, "body", "malformed JSON"}
	}
	if _, err := f.Get(model.HostKind, r.PathValue("pid")); err != nil {
		return 0, nil, err
	}
	old, err := f.Get(model.PortKind, b.PortID)
	if err != nil {
		return 0, nil, &httpError{400, "port_id", "port_id: port " + b.PortID + " does not exist"}
	}
	p := model.Clone(old).(*model.Port)
	p.HostID, p.InterfaceName = r.PathValue("pid"), b.InterfaceName
	if err := f.write(old, p); err != nil {
		return 0, nil, err
	}
	return 201, binding{p.HostID, p.InterfaceName, p.ID}, nil
}

func (f *fakeAPI) unbind(r *http.Request, _ []byte) (int, any, error) {
	for _, o := range f.objs[model.PortKind] {
		if p := o.(*model.Port); p.HostID == r.PathValue("pid") && p.InterfaceName == r.PathValue("iface") {
			p.HostID, p.InterfaceName = "", ""
			return 204, nil, nil
		}
	}
	return 0, nil, &httpError{404, "", "no binding of interface " + r.PathValue("iface")}
}

// SetStatus publishes a datapath status for a host, as its agent would.
func (f *fakeAPI) SetStatus(hostID string, st *agentstatus.Datapath) {
	b, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status[hostID] = b
}

func (f *fakeAPI) datapath(r *http.Request, _ []byte) (int, any, error) {
	id := r.PathValue("pid")
	if _, err := f.Get(model.HostKind, id); err != nil {
		return 0, nil, err
	}
	b, ok := f.status[id]
	if !ok {
		return 0, nil, fmt.Errorf("host %s has no running agent: %w", id, model.ErrNotFound)
	}
	return 200, json.RawMessage(b), nil
}

// trace checks the request as the server does (its exact type, unknown
// keys refused) and answers a fake walk: the ingress port named the way
// the simulation names ports (DEVICE:ID), the device, an output to the
// port's peer or interface. Enough to test the words and the rendering;
// the real walk is the end-to-end test's.
func (f *fakeAPI) trace(_ *http.Request, body []byte) (int, any, error) {
	var req native.TraceRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return 0, nil, &httpError{400, "body", err.Error()}
	}
	f.lastTrace = &req
	o, err := f.Get(model.PortKind, req.InPortID)
	if err != nil {
		return 0, nil, &httpError{400, "in_port_id", fmt.Sprintf("in_port_id: port %q does not exist", req.InPortID)}
	}
	if !req.Src.IsValid() || !req.Dst.IsValid() {
		return 0, nil, &httpError{400, "src", "src: give the packet's src and dst addresses"}
	}
	if f.traceAnswer != nil {
		return 200, f.traceAnswer, nil
	}
	p := o.(*model.Port)
	kind, dev := "bridge", p.BridgeID
	if p.RouterID != "" {
		kind, dev = "router", p.RouterID
	}
	devKind := model.BridgeKind
	if kind == "router" {
		devKind = model.RouterKind
	}
	d, _ := f.Get(devKind, dev)
	if name := devKind.Field("name").Text(d); name != "" {
		dev = name
	}
	port := dev + ":" + p.ID
	proto := req.Proto
	if proto == "" {
		proto = "icmp"
	}
	return 200, &native.TraceResponse{
		Packet: fmt.Sprintf("02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ipv4 %s > %s %s", req.Src, req.Dst, proto),
		Steps: []native.TraceStep{
			{Depth: 0, Kind: "ingress", Object: port, Message: "ingress port " + port},
			{Depth: 0, Kind: kind, Object: dev, Message: "dst unknown: flood"},
			{Depth: 1, Kind: "output", Object: port, Message: "output to host " + p.HostID},
		},
		Verdict: "forward",
		Actions: []string{"output(port " + p.ID + " interface " + p.InterfaceName + ")"},
		Tags:    2,
	}, nil
}

// The model.Tx implementation the write rules run against.

func (f *fakeAPI) Get(k *model.Kind, id string) (model.Object, error) {
	for _, o := range f.objs[k] {
		if o.GetMeta().ID == id {
			return model.Clone(o), nil
		}
	}
	return nil, fmt.Errorf("%s %s: %w", k.Name, id, model.ErrNotFound)
}

func (f *fakeAPI) List(k *model.Kind, field, value string) ([]model.Object, error) {
	var out []model.Object
	for _, o := range f.objs[k] {
		if field == "" || k.Field(field).Text(o) == value {
			out = append(out, model.Clone(o))
		}
	}
	return out, nil
}

func (f *fakeAPI) Put(o model.Object) error {
	k := model.KindOf(o)
	o = model.Clone(o)
	for i, x := range f.objs[k] {
		if x.GetMeta().ID == o.GetMeta().ID {
			f.objs[k][i] = o
			return nil
		}
	}
	f.objs[k] = append(f.objs[k], o)
	return nil
}

// Delete applies every reference's on-delete policy, as the store does.
func (f *fakeAPI) Delete(k *model.Kind, id string) error {
	if _, err := f.Get(k, id); err != nil {
		return err
	}
	type hit struct {
		o  model.Object
		fl *model.Field
	}
	var hits []hit
	for _, k2 := range model.Kinds() {
		for _, fl := range k2.Refs() {
			if fl.Ref != k.Name {
				continue
			}
			for _, o := range f.objs[k2] {
				if slices.Contains(fl.RefIDs(o), id) {
					if fl.OnDelete == model.Restrict {
						return model.Conflictf("%s %s is used by %s %s (%s)", k.Name, id, k2.Name, o.GetMeta().ID, fl.JSON)
					}
					hits = append(hits, hit{o, fl})
				}
			}
		}
	}
	f.objs[k] = slices.DeleteFunc(f.objs[k], func(o model.Object) bool { return o.GetMeta().ID == id })
	for _, h := range hits {
		if h.fl.OnDelete == model.Cascade {
			if err := f.Delete(model.KindOf(h.o), h.o.GetMeta().ID); err != nil && !errors.Is(err, model.ErrNotFound) {
				return err
			}
			continue
		}
		v := h.fl.Value(h.o)
		if h.fl.IsList() {
			v.Set(reflect.ValueOf(slices.DeleteFunc(slices.Clone(v.Interface().([]string)), func(s string) bool { return s == id })))
		} else {
			v.SetString("")
		}
	}
	return nil
}

func (f *fakeAPI) UniqueOwner(k *model.Kind, fl *model.Field, scope, value string) (string, error) {
	for _, o := range f.objs[k] {
		if fl.Text(o) == value && (fl.Scope == "" || k.Field(fl.Scope).Text(o) == scope) {
			return o.GetMeta().ID, nil
		}
	}
	return "", nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
