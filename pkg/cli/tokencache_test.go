package cli

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTokenCache(t *testing.T) {
	c := TokenCache{Dir: filepath.Join(t.TempDir(), "nagare", "tokens")}
	now := time.Now()
	api := "http://127.0.0.1:9696"
	if _, ok := c.Load(api, "admin", "admin", now); ok {
		t.Fatal("empty cache returned a token")
	}
	if err := c.Store(api, "admin", "admin", "tok-1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if tok, ok := c.Load(api, "admin", "admin", now); !ok || tok != "tok-1" {
		t.Fatalf("Load = %q, %v; want tok-1", tok, ok)
	}
	// Per API URL, user and project.
	for _, k := range [][3]string{{"http://127.0.0.1:9697", "admin", "admin"}, {api, "alice", "admin"}, {api, "admin", "demo"}} {
		if tok, ok := c.Load(k[0], k[1], k[2], now); ok {
			t.Errorf("%v: got %q, cached for another key", k, tok)
		}
	}
	// Owner-only files in an owner-only directory.
	entries, err := os.ReadDir(c.Dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("cache dir: %v %v", entries, err)
	}
	fi, err := os.Stat(filepath.Join(c.Dir, entries[0].Name()))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if di, err := os.Stat(c.Dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir mode %v (%v), want 0700", di.Mode(), err)
	}
	// A token about to expire is not reused.
	if _, ok := c.Load(api, "admin", "admin", now.Add(time.Hour-30*time.Second)); ok {
		t.Error("token with 30 s left reused")
	}
	// A file others may read is ignored.
	if err := os.Chmod(filepath.Join(c.Dir, entries[0].Name()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Load(api, "admin", "admin", now); ok {
		t.Error("world-readable cache file used")
	}
	if err := c.Forget(api, "admin", "admin"); err != nil {
		t.Fatal(err)
	}
	if err := c.Forget(api, "admin", "admin"); err != nil {
		t.Fatalf("forgetting twice: %v", err)
	}
	if _, ok := c.Load(api, "admin", "admin", now); ok {
		t.Error("forgotten token returned")
	}
	// Disabled: nothing stored, nothing loaded.
	off := TokenCache{}
	if err := off.Store(api, "admin", "admin", "x", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, ok := off.Load(api, "admin", "admin", now); ok {
		t.Error("disabled cache returned a token")
	}
}
