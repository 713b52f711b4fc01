package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// volume is a filesystem of PostgreSQL's own for the run: an ext4 image
// with its journal, kept in the work folder and mounted over a loop device.
//
// Why: this machine's root filesystem is ext4 without a journal. Without
// one, ext4 does not reuse an inode freed in the last 60 s (300 s while its
// inode table block is unwritten), and scans past every such inode for each
// file it creates. A side's deletions free about 150,000 inodes (a database
// is about 300 files), so the CREATE DATABASE of whichever side ran next
// paid for them: perf put half of PostgreSQL's CPU in recently_deleted and
// the lookups it makes, and the same 500 creations took raw 36 s when it
// ran first and 73 to 86 s after another side. A journaled filesystem has
// no such wait, and one used by PostgreSQL alone shares its journal commits
// (the fsyncs) with no other process, as a database server's disk would.
type volume struct {
	image string
	dir   string
}

// volumeSize is the image's size; it is sparse and holds only what is
// written. A 1000-database stack needs about 9 GiB.
const volumeSize = 64 << 30

// mountVolume makes and mounts the volume under work. It needs root and
// mkfs.ext4; the error says what is missing, and leaves nothing behind.
func mountVolume(work string) (_ *volume, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("mounting a filesystem needs root")
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		return nil, fmt.Errorf("mkfs.ext4 not found (Debian's e2fsprogs): %w", err)
	}
	v := &volume{image: filepath.Join(work, "postgres-volume.img")}
	// The mount point is not in work, which only root may enter: the
	// postgres system user must reach its folders.
	if v.dir, err = os.MkdirTemp("", "orgforge-bench-postgres-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(v.image)
			_ = os.Remove(v.dir)
		}
	}()
	f, err := os.Create(v.image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(volumeSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-L", "orgforge-bench", v.image).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	// discard returns the blocks of dropped databases to the image's
	// filesystem, so that the image stays as large as its live data.
	if out, err := exec.Command("mount", "-o", "loop,discard", v.image, v.dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mount -o loop: %w: %s", err, strings.TrimSpace(string(out)))
	}
	// The postgres system user makes its folders in it.
	if err := os.Chmod(v.dir, 0o755); err != nil {
		_ = v.unmount()
		return nil, err
	}
	return v, nil
}

// describe says where PostgreSQL's data is, for the results.
func (v *volume) describe() string {
	return fmt.Sprintf("its own ext4 filesystem with a journal (a %d GiB sparse image on a loop device)", volumeSize>>30)
}

// unmount unmounts the volume, which frees its loop device, and deletes
// the image. A stack's server that is still stopping keeps it busy for a
// moment, so a busy unmount is tried again for a while.
func (v *volume) unmount() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("umount", v.dir).CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("umount %s: %w: %s (the image %s is left)", v.dir, err, strings.TrimSpace(string(out)), v.image)
		}
		time.Sleep(time.Second)
	}
	return errors.Join(os.Remove(v.dir), os.Remove(v.image))
}
