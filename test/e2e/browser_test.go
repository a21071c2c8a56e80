//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/nagare/nagare/test/e2e/harness"
)

// browser is Debian's chromium, headless, driven over the DevTools
// protocol. It records what a page must never do: open a dialog (an
// injected alert) or throw an uncaught exception.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu         sync.Mutex
	dialogs    []string
	exceptions []string
}

// newBrowser starts chromium with a fresh profile; it is killed when the
// test ends. The flags keep it off the network it must not use (this
// machine has none): no background networking, component updates, sync or
// QUIC probes, which would only flood refused connections.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	harness.Require(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"),
		chromedp.NoSandbox, // root, in a container: chromium's sandbox needs user namespaces it may not have
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 860),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *page.EventJavascriptDialogOpening:
			b.dialogs = append(b.dialogs, string(e.Type)+": "+e.Message)
		case *runtime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			b.exceptions = append(b.exceptions, msg)
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(b.checkClean)
	return b
}

// checkClean fails the test if a page opened a dialog or threw.
func (b *browser) checkClean() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range b.dialogs {
		b.t.Errorf("a page opened a dialog: %s", d)
	}
	for _, e := range b.exceptions {
		b.t.Errorf("a page threw: %s", e)
	}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// eval runs a JavaScript expression (awaiting a promise) and decodes its
// value into T.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, func(p *runtime.EvaluateParams) { p.AwaitPromise = new(true) }))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is true and returns how
// long that took; on timeout the test fails with what describe says.
func (b *browser) waitFor(what, expr, describe string, timeout time.Duration) time.Duration {
	b.t.Helper()
	start := time.Now()
	for {
		if eval[bool](b, "Boolean("+expr+")") {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			state := ""
			if describe != "" {
				state = fmt.Sprint(eval[any](b, describe))
			}
			b.t.Fatalf("%s: not within %v (%s)", what, timeout, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot writes the window to $NAGARE_SCREENSHOTS/name.png when that
// is set (make screenshots).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("NAGARE_SCREENSHOTS")
	if dir == "" {
		return
	}
	time.Sleep(300 * time.Millisecond) // let the last frame paint
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("wrote %s", filepath.Join(dir, name+".png"))
}

// setValue sets a form control's value as typing would (an input event),
// by element id.
func (b *browser) setValue(id, value string) {
	b.t.Helper()
	v, _ := json.Marshal(value)
	ok := eval[bool](b, fmt.Sprintf(`(() => { const el = document.getElementById(%q); if (!el) return false;
		el.value = %s; el.dispatchEvent(new Event('input', {bubbles: true})); el.dispatchEvent(new Event('change', {bubbles: true})); return el.value === %s; })()`, id, v, v))
	if !ok {
		b.t.Fatalf("cannot set #%s to %s", id, v)
	}
}

// jsString quotes s for JavaScript.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return strings.TrimSpace(string(b))
}
