package devstack

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// procUID is the real user id of process pid.
func procUID(t *testing.T, pid int) uint32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && fields[0] == "Uid:" {
			uid, err := strconv.ParseUint(fields[1], 10, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(uid)
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return 0
}

func TestPostgresStartedByRootRunsAsNobodyWhomEveryMachineHas(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the server runs as the stack's own user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := StartPostgres(ctx, t.TempDir(), PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close() }()

	if got := strconv.Itoa(int(procUID(t, pg.proc.cmd.Process.Pid))); got != nobody.Uid {
		t.Errorf("server runs as uid %s; want nobody's, %s", got, nobody.Uid)
	}
	fi, err := os.Stat(pg.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := strconv.Itoa(int(fi.Sys().(*syscall.Stat_t).Uid)); got != nobody.Uid {
		t.Errorf("data folder belongs to uid %s; want nobody's, %s", got, nobody.Uid)
	}
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	_ = conn.Close(ctx)
}

func TestPostgresStartedByRootSaysWhenNobodyCannotReachTheBinaries(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("not root: the server runs as the stack's own user")
	}
	bin, err := toolPath("postgres", EnvPGBin)
	if err != nil {
		t.Fatal(err)
	}
	// The same binaries, through a folder only root may enter, as under a
	// home of mode 700.
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(private, "bin")); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPGBin, filepath.Join(private, "bin"))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := StartPostgres(ctx, t.TempDir(), PostgresOptions{})
	if err == nil {
		_ = pg.Close()
		t.Fatal("StartPostgres succeeded with binaries nobody cannot reach")
	}
	for _, want := range []string{"nobody", private, "hack/tools.sh"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
