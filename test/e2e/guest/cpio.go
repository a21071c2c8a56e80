package guest

import (
	"fmt"
	"io"
	"strings"
)

// cpioWriter writes the "newc" cpio format (magic 070701), the only one the
// kernel unpacks into an initramfs: a 110-byte ASCII header of thirteen
// 8-digit hex fields, the NUL-terminated name padded to 4 bytes, then the
// data padded to 4 bytes. The archive ends with an entry named TRAILER!!!.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

// File types of a cpio entry's mode (the st_mode bits of stat(2)).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeCharDev = 0o020000
)

func (c *cpioWriter) dir(name string, perm uint32) { c.entry(name, modeDir|perm, 0, 0, nil) }

func (c *cpioWriter) file(name string, perm uint32, data []byte) {
	c.entry(name, modeFile|perm, 0, 0, data)
}

func (c *cpioWriter) symlink(name, target string) {
	c.entry(name, modeSymlink|0o777, 0, 0, []byte(target))
}

func (c *cpioWriter) charDev(name string, perm, major, minor uint32) {
	c.entry(name, modeCharDev|perm, major, minor, nil)
}

// close writes the trailer; it returns the first error of any write.
func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, 0, 0, nil)
	return c.err
}

func (c *cpioWriter) entry(name string, mode, rdevMajor, rdevMinor uint32, data []byte) {
	if c.err != nil {
		return
	}
	name = strings.TrimPrefix(name, "/")
	if name == "" || strings.ContainsRune(name, 0) {
		c.err = fmt.Errorf("cpio: bad entry name %q", name)
		return
	}
	c.ino++
	nlink := uint32(1)
	if mode&0o170000 == modeDir {
		nlink = 2
	}
	// ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
	// rdevmajor, rdevminor, namesize (with its NUL), check.
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	var b []byte
	b = append(b, hdr...)
	b = append(b, name...)
	b = append(b, 0)
	b = pad4(b)
	b = append(b, data...)
	b = pad4(b)
	_, c.err = c.w.Write(b)
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
