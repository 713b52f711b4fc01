package devstack

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

// adminMajor logs in to pg as its admin and returns the major of
// SHOW server_version_num.
func adminMajor(ctx context.Context, pg *Postgres) (int, error) {
	conn, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(ctx) }()
	var num string
	if err := conn.QueryRow(ctx, "SHOW server_version_num").Scan(&num); err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(num)
	return v / 10000, err
}

func TestStackStartsAClusterOnEachMajorAndStopsEachApart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	majors := []int{13, 15, 17}
	var opts Options
	for _, m := range majors {
		opts.Clusters = append(opts.Clusters, PostgresOptions{Major: m})
	}
	st, closeStack := startStack(t, ctx, opts)
	if st.Postgres != nil {
		t.Error("the stack started its main server, which it was not asked for")
	}
	if len(st.Clusters) != len(majors) {
		t.Fatalf("%d clusters started; want %d", len(st.Clusters), len(majors))
	}
	ports, dirs := map[int]bool{}, map[string]bool{}
	for _, pg := range st.Clusters {
		ports[pg.Port], dirs[pg.DataDir()] = true, true
	}
	if len(ports) != len(majors) || len(dirs) != len(majors) {
		t.Errorf("the clusters share ports or folders: ports %v, folders %v", ports, dirs)
	}

	for i, want := range majors {
		pg := st.Clusters[i]
		t.Run(fmt.Sprintf("cluster %d runs PostgreSQL %d with an Aurora-like admin", i+1, want), func(t *testing.T) {
			got, err := adminMajor(ctx, pg)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("server_version_num says PostgreSQL %d; want %d", got, want)
			}
			checkAuroraAdmin(t, ctx, pg)
		})
	}

	t.Run("a stopped cluster leaves the others answering, and starts again", func(t *testing.T) {
		stopped := st.Clusters[1]
		if err := stopped.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := adminMajor(ctx, stopped); err == nil {
			t.Fatal("the stopped cluster answered")
		}
		for i, pg := range st.Clusters {
			if pg == stopped {
				continue
			}
			if got, err := adminMajor(ctx, pg); err != nil || got != majors[i] {
				t.Errorf("cluster %d while cluster 2 is stopped: PostgreSQL %d, %v; want %d", i+1, got, err, majors[i])
			}
		}
		if err := stopped.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if got, err := adminMajor(ctx, stopped); err != nil || got != majors[1] {
			t.Errorf("cluster 2 after Start: PostgreSQL %d, %v; want %d", got, err, majors[1])
		}
	})

	if err := closeStack(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, pg := range st.Clusters {
		addr := net.JoinHostPort(pg.Host, strconv.Itoa(pg.Port))
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s still accepts connections after Close", addr)
		}
	}
}

func TestPGBinsNameEachMajorsBinaries(t *testing.T) {
	cases := map[string]struct {
		env     string
		want    map[int]string
		wantErr string
	}{
		"hack/tools.sh postgres-all's lines": {
			env:  "13=/cache/13/bin\n15=/cache/15/bin\n",
			want: map[int]string{13: "/cache/13/bin", 15: "/cache/15/bin"},
		},
		"on one line": {
			env:  "13=/a 17=/b",
			want: map[int]string{13: "/a", 17: "/b"},
		},
		"no major":             {env: "/cache/13/bin", wantErr: `"/cache/13/bin"`},
		"a major not a number": {env: "pg13=/a", wantErr: `"pg13=/a"`},
		"no folder":            {env: "13= 15=/b", wantErr: `"13="`},
		"major zero":           {env: "0=/a", wantErr: `"0=/a"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parsePGBins(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), EnvPGBins) {
					t.Fatalf("error %v; want one naming %s and %s", err, EnvPGBins, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parsePGBins(%q) (-want +got):\n%s", tc.env, diff)
			}
		})
	}
}

func TestAMajorThatPGBinsDoesNotNameFailsAndSaysWhich(t *testing.T) {
	t.Setenv(EnvPGBin, "/default/bin")
	t.Setenv(EnvPGBins, "13=/cache/13/bin 17=/cache/17/bin")
	for major, want := range map[int]string{0: "/default/bin", 13: "/cache/13/bin", 17: "/cache/17/bin"} {
		if got, err := postgresBin(major); err != nil || got != want {
			t.Errorf("postgresBin(%d) = %q, %v; want %q", major, got, err, want)
		}
	}
	_, err := postgresBin(15)
	if err == nil {
		t.Fatal("postgresBin(15) succeeded with no binaries of 15")
	}
	for _, want := range []string{EnvPGBins, "PostgreSQL 15", "[13 17]", "hack/tools.sh postgres-all"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	st, err := Start(context.Background(), Options{Dir: t.TempDir(), Clusters: []PostgresOptions{{Major: 15}}})
	if err == nil {
		_ = st.Close()
		t.Fatal("a stack started a cluster on a major with no binaries")
	}
	if !strings.Contains(err.Error(), EnvPGBins) || !strings.Contains(err.Error(), "cluster 1") {
		t.Errorf("Start: %v; want an error naming cluster 1 and %s", err, EnvPGBins)
	}
}
