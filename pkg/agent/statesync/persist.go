package statesync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/flowstate"
)

// The flow-state table survives a restart of the agent, even a SIGKILL:
// it is saved every saveEvery and on a clean shutdown, atomically (a
// temporary file renamed over the last one), and loaded at start. Without
// it an agent restart would cut every NATed connection through the host
// (the translations would be forgotten) and make established connections
// look new to stateful rules.
//
// The file is a header (magic, the host's id, the save time) and then one
// record per entry: its remaining lifetime in milliseconds (4 bytes) and
// its wire form (flowstate.AppendEntry). Entries whose lifetime ran out
// while the agent was down are not loaded.

const (
	saveEvery = 2 * time.Second
	// saveIdleEvery: a table whose entries did not change (none added,
	// removed or touched for a live flow) is saved this often anyway.
	saveIdleEvery = 30 * time.Second
	stateFile     = "flowstate"
	// saveChunk is how many table slots one lock hold encodes: 0.2 to
	// 0.5 ms on a table of half a million entries
	// (BenchmarkSaveRestoreState), where the whole walk takes 35 ms.
	saveChunk  = 4096
	stateMagic = "NAGAREFS1\n"
)

// saver serializes saves and remembers what was saved.
type saver struct {
	mu      sync.Mutex
	buf     []byte
	last    flowstate.Stats
	lastAt  time.Time
	touched uint64 // counters.touched when last saved: lifetimes moved since
}

// statePath is the state file: named after the host, so that several
// agents sharing a machine and the default --state-dir (demos,
// benchmarks) keep theirs apart.
func (s *Sync) statePath() string {
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\\' {
			return '_'
		}
		return r
	}, s.cfg.HostName)
	return filepath.Join(s.cfg.StateDir, stateFile+"-"+name)
}

// saveLoop saves the table every saveEvery while it changes.
func (s *Sync) saveLoop(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("--state-dir %s: %w", s.cfg.StateDir, err)
	}
	t := time.NewTicker(saveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err := s.Save(false); err != nil {
			s.cfg.Log.Warn("save flow state", "dir", s.cfg.StateDir, "err", err)
		}
	}
}

// Save writes the table to the state file (nothing without a state
// directory). Unless force, a table whose counters did not move since the
// last save is saved only every saveIdleEvery.
func (s *Sync) Save(force bool) error {
	if s.cfg.StateDir == "" {
		return nil
	}
	sv := &s.saver
	sv.mu.Lock()
	defer sv.mu.Unlock()
	st := s.table.Stats()
	now := time.Now()
	touched := s.count.touched.Load()
	if !force && !sv.lastAt.IsZero() && sameContent(st, sv.last) && touched == sv.touched && now.Sub(sv.lastAt) < saveIdleEvery {
		return nil
	}
	b := append(sv.buf[:0], stateMagic...)
	b = appendString(b, s.cfg.HostID)
	b = binary.BigEndian.AppendUint64(b, uint64(now.UnixNano()))
	// In chunks: the table's lock is held for one chunk at a time, so
	// misses do not wait behind the whole table.
	put := func(e *flowstate.Entry, ttl time.Duration) bool {
		b = binary.BigEndian.AppendUint32(b, uint32(min(ttl.Milliseconds()+1, 1<<32-1)))
		b = flowstate.AppendEntry(b, e)
		return true
	}
	for next := 0; next >= 0; {
		next = s.table.RangeTTLFrom(next, saveChunk, now.UnixNano(), put)
	}
	sv.buf = b
	if err := writeFileAtomic(s.statePath(), b); err != nil {
		return err
	}
	sv.last, sv.lastAt, sv.touched = st, now, touched
	return nil
}

// sameContent reports that no entry was added or removed between two
// snapshots of the counters.
func sameContent(a, b flowstate.Stats) bool {
	return a.Entries == b.Entries && a.Inserted == b.Inserted && a.Imported == b.Imported &&
		a.Expired == b.Expired && a.Removed == b.Removed
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// writeFileAtomic replaces path with data: a crash leaves the old file or
// the new one, never a torn one.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// Load restores the entries saved by this host's previous run that are
// still alive, then those an offloading datapath kept in the kernel. A
// missing file is a first start; a damaged or foreign one is logged and
// what could be read is kept.
func (s *Sync) Load() {
	defer func() {
		// The kernel's copies are fresher than the file's.
		n, dropped, err := s.adoptOffloaded(time.Now())
		if err != nil {
			s.cfg.Log.Warn("read back the kernel's connections", "err", err)
		} else if n+dropped > 0 {
			s.cfg.Log.Info("flow state read back from the kernel", "entries", n, "dropped", dropped)
		}
	}()
	if s.cfg.StateDir == "" {
		return
	}
	n, refused, err := s.restore(s.statePath(), time.Now())
	var foreign *foreignStateError
	switch {
	case errors.Is(err, os.ErrNotExist):
		return
	case errors.As(err, &foreign):
		// A previous NSDB's host of the same name (a demo or benchmark
		// run again): nothing of it applies here.
		s.cfg.Log.Info("ignoring the flow state file of another host", "file", s.statePath(), "err", err)
	case err != nil:
		s.cfg.Log.Warn("flow state file damaged; keeping the entries before the damage", "file", s.statePath(), "restored", n, "err", err)
	default:
		s.cfg.Log.Info("flow state restored", "file", s.statePath(), "entries", n, "refused", refused)
	}
}

func (s *Sync) restore(path string, now time.Time) (restored, refused int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<16)
	hdr := make([]byte, len(stateMagic)+2)
	if _, err := io.ReadFull(r, hdr); err != nil || !bytes.Equal(hdr[:len(stateMagic)], []byte(stateMagic)) {
		return 0, 0, errors.New("not a flow state file")
	}
	host := make([]byte, binary.BigEndian.Uint16(hdr[len(stateMagic):]))
	var at [8]byte
	if _, err := io.ReadFull(r, host); err != nil {
		return 0, 0, err
	}
	if string(host) != s.cfg.HostID {
		return 0, 0, &foreignStateError{string(host), s.cfg.HostID}
	}
	if _, err := io.ReadFull(r, at[:]); err != nil {
		return 0, 0, err
	}
	down := now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(at[:]))))
	down = max(down, 0)
	rec := make([]byte, 4+flowstate.MaxEntryWireLen)
	for {
		if _, err := io.ReadFull(r, rec[:4+3]); err != nil {
			if errors.Is(err, io.EOF) {
				return restored, refused, nil
			}
			return restored, refused, err
		}
		ttl := time.Duration(binary.BigEndian.Uint32(rec)) * time.Millisecond
		n := flowstate.EntryWireLenOf(rec[4])
		if _, err := io.ReadFull(r, rec[4+3:4+n]); err != nil {
			return restored, refused, err
		}
		e, _, err := flowstate.DecodeEntry(rec[4 : 4+n])
		if err != nil {
			return restored, refused, err
		}
		if ttl <= down {
			continue // expired while the agent was down
		}
		if err := s.table.Restore(&e, ttl-down, now.UnixNano()); err != nil {
			refused++
			continue
		}
		restored++
	}
}

// foreignStateError: the state file was saved by another host id.
type foreignStateError struct{ saved, self string }

func (e *foreignStateError) Error() string {
	return fmt.Sprintf("saved by host %q, not this one (%s)", e.saved, e.self)
}
