package native

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// decodeStrict decodes a small request document, refusing unknown fields.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
			return badField(strings.Trim(f, `"`), "unknown field")
		}
		return badField("body", "malformed JSON: %s", msg)
	}
	return nil
}

var (
	openapiOnce sync.Once
	openapiDoc  []byte
)

func (a *API) openapi(w http.ResponseWriter, r *http.Request) {
	openapiOnce.Do(func() {
		openapiDoc, _ = json.MarshalIndent(OpenAPI(), "", "  ")
	})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapiDoc)
}

type obj = map[string]any

// OpenAPI builds the OpenAPI 3.1 document of the native API from the model's
// schema, so the document cannot drift from what the server accepts.
func OpenAPI() map[string]any {
	schemas := obj{"Error": obj{
		"type": "object",
		"properties": obj{"error": obj{"type": "object", "properties": obj{
			"code": obj{"type": "integer"}, "type": obj{"type": "string"},
			"field": obj{"type": "string"}, "message": obj{"type": "string"},
		}}},
	}}
	paths := obj{}
	errs := obj{
		"400": ref("Error", "invalid input; error.field names the field"),
		"404": ref("Error", "no such object"),
		"409": ref("Error", "stale revision, taken value or object in use"),
	}
	for _, k := range sortedKinds() {
		name := schemaName(k)
		schemas[name] = kindSchema(k)
		one := ref(name, "the "+k.Name)
		idParam := []any{obj{"name": "id", "in": "path", "required": true, "schema": obj{"type": "string", "format": "uuid"}}}
		paths["/api/v1/"+k.Plural] = obj{
			"get":  obj{"summary": "List " + k.Plural + " in creation order; ?field=value filters", "responses": merge(obj{"200": arrayOf(name)}, errs)},
			"post": obj{"summary": "Create a " + k.Name, "requestBody": body(name), "responses": merge(obj{"201": one}, errs)},
		}
		paths["/api/v1/"+k.Plural+"/{id}"] = obj{
			"parameters": idParam,
			"get":        obj{"summary": "Show a " + k.Name, "responses": merge(obj{"200": one}, errs)},
			"put":        obj{"summary": "Update the given fields of a " + k.Name + " (revision or If-Match: compare-and-swap)", "requestBody": body(name), "responses": merge(obj{"200": one}, errs)},
			"delete":     obj{"summary": "Delete a " + k.Name, "responses": merge(obj{"204": obj{"description": "deleted"}}, errs)},
		}
		for _, pf := range k.ParentFields() {
			p := model.KindByName(pf.Ref)
			paths["/api/v1/"+p.Plural+"/{pid}/"+k.Plural] = obj{
				"parameters": []any{obj{"name": "pid", "in": "path", "required": true, "schema": obj{"type": "string", "format": "uuid"}}},
				"get":        obj{"summary": "List the " + k.Plural + " of a " + p.Name, "responses": merge(obj{"200": arrayOf(name)}, errs)},
				"post":       obj{"summary": "Create a " + k.Name + " in a " + p.Name, "requestBody": body(name), "responses": merge(obj{"201": one}, errs)},
			}
		}
	}
	schemas["Binding"] = obj{"type": "object", "properties": obj{
		"host_id": obj{"type": "string", "format": "uuid"}, "interface_name": obj{"type": "string"}, "port_id": obj{"type": "string", "format": "uuid"},
	}}
	paths["/api/v1/hosts/{id}/bindings"] = obj{
		"get":  obj{"summary": "List the host's interface-port bindings", "responses": merge(obj{"200": arrayOf("Binding")}, errs)},
		"post": obj{"summary": "Bind a port to an interface of the host", "requestBody": body("Binding"), "responses": merge(obj{"201": ref("Binding", "the binding")}, errs)},
	}
	paths["/api/v1/hosts/{id}/bindings/{interface}"] = obj{
		"delete": obj{"summary": "Unbind the interface", "responses": merge(obj{"204": obj{"description": "unbound"}}, errs)},
	}
	paths["/api/v1/ports/{id}/link"] = obj{
		"put":    obj{"summary": "Link the port to peer_id (symmetric)", "requestBody": body("Port"), "responses": merge(obj{"200": ref("Port", "the port")}, errs)},
		"delete": obj{"summary": "Unlink the port and its peer", "responses": merge(obj{"204": obj{"description": "unlinked"}}, errs)},
	}
	paths["/api/v1/hosts/{id}/datapath"] = obj{
		"get": obj{"summary": "The datapath status the host's agent publishes: flows, hits, misses, lost, ports, a flow sample",
			"responses": merge(obj{"200": obj{"description": "status"}}, errs)},
	}
	paths["/api/v1/routers/{id}/nat-translations"] = obj{
		"get": obj{"summary": "The router's NAT bindings on every live host (show ip nat translations): protocol, inside global/local, outside local/global, state, lifetime left",
			"responses": merge(obj{"200": obj{"description": "translations"}}, errs)},
	}
	paths["/api/v1/trace"] = obj{
		"post": obj{"summary": "Simulate a described packet from an ingress port and return every device, rule and decision (nothing is sent)",
			"requestBody": obj{"required": true, "content": obj{"application/json": obj{"schema": obj{"type": "object", "properties": obj{
				"in_port_id": obj{"type": "string"}, "src": obj{"type": "string"}, "dst": obj{"type": "string"}, "proto": obj{"type": "string"},
				"src_port": obj{"type": "integer"}, "dst_port": obj{"type": "integer"}, "eth_src": obj{"type": "string"}, "eth_dst": obj{"type": "string"},
				"vlan": obj{"type": "integer"}, "ttl": obj{"type": "integer"}, "length": obj{"type": "integer"}, "df": obj{"type": "boolean"},
				"arp": obj{"type": "boolean"}, "host_id": obj{"type": "string"}}}}}},
			"responses": merge(obj{"200": obj{"description": "the trace"}}, errs)},
	}
	return obj{
		"openapi": "3.1.0",
		"info": obj{"title": "Nagare native API", "version": "v1",
			"description": "The native virtual topology: bridges, routers, ports, routes, chains and rules, tunnel zones, hosts and bindings, DHCP, load balancers."},
		"paths":      paths,
		"components": obj{"schemas": schemas},
	}
}

func schemaName(k *model.Kind) string {
	var b strings.Builder
	for _, part := range strings.Split(k.Name, "-") {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func kindSchema(k *model.Kind) obj {
	props := obj{}
	var required []string
	for _, f := range k.Fields {
		s := typeSchema(f.Type)
		if f.Doc != "" {
			s["description"] = f.Doc
		}
		if f.Ref != "" {
			s["x-nagare-ref"] = f.Ref
		}
		if len(f.Enum) > 0 {
			s["enum"] = f.Enum
		}
		if f.Default != "" {
			s["default"] = f.Default
		}
		if f.Min != nil {
			s["minimum"] = *f.Min
		}
		if f.Max != nil {
			s["maximum"] = *f.Max
		}
		if f.ReadOnly {
			s["readOnly"] = true
		}
		if f.Secret {
			s["writeOnly"] = true
		}
		if f.CLI != "" {
			s["x-nagare-cli"] = f.CLI
		}
		props[f.JSON] = s
		if f.Required {
			required = append(required, f.JSON)
		}
	}
	out := obj{"type": "object", "description": k.Doc, "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

func typeSchema(t reflect.Type) obj {
	switch t {
	case reflect.TypeOf(netip.Addr{}):
		return obj{"type": "string", "format": "ip", "description": "IPv4 or IPv6 address"}
	case reflect.TypeOf(netip.Prefix{}):
		return obj{"type": "string", "format": "cidr"}
	case reflect.TypeOf(packet.MAC{}):
		return obj{"type": "string", "pattern": "^([0-9a-f]{2}:){5}[0-9a-f]{2}$"}
	case reflect.TypeOf(model.PortRange{}):
		return obj{"type": "string", "pattern": "^[0-9]+(-[0-9]+)?$"}
	case reflect.TypeOf(model.NATTarget{}), reflect.TypeOf(model.Opt121Route{}):
		return obj{"type": "string"}
	}
	switch t.Kind() {
	case reflect.Slice:
		return obj{"type": "array", "items": typeSchema(t.Elem())}
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Int, reflect.Int64:
		return obj{"type": "integer"}
	}
	return obj{}
}

func ref(name, desc string) obj {
	return obj{"description": desc, "content": obj{"application/json": obj{"schema": obj{"$ref": "#/components/schemas/" + name}}}}
}

func arrayOf(name string) obj {
	return obj{"description": "list", "content": obj{"application/json": obj{"schema": obj{
		"type": "array", "items": obj{"$ref": "#/components/schemas/" + name}}}}}
}

func body(name string) obj {
	return obj{"required": true, "content": obj{"application/json": obj{"schema": obj{"$ref": "#/components/schemas/" + name}}}}
}

func merge(a, b obj) obj {
	out := obj{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
