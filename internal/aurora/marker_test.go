package aurora

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestMarkerPrintsAndParsesTheSameComment(t *testing.T) {
	m := Marker{Org: "acme-corp", UID: "0b6c2a8e-6f4d-4b1e-9d57-3c1f0e2a9b10"}
	want := "orgforge:org=acme-corp;uid=0b6c2a8e-6f4d-4b1e-9d57-3c1f0e2a9b10"
	if got := m.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	got, ok := ParseMarker(want)
	if !ok {
		t.Fatalf("ParseMarker(%q) refused it", want)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("ParseMarker (-want +got):\n%s", diff)
	}
}

func TestMarkerWithAClusterPrintsAndParsesTheSameComment(t *testing.T) {
	cases := map[string]struct {
		m    Marker
		want string
	}{
		"with the cluster": {Marker{Org: "acme", UID: "0b6c", Cluster: "5d1e-77"},
			"orgforge:org=acme;uid=0b6c;cluster=5d1e-77"},
		// Markers written before the cluster part still read, as this
		// cluster's, and print back the same.
		"an old marker": {Marker{Org: "acme", UID: "0b6c"}, "orgforge:org=acme;uid=0b6c"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := tc.m.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			got, ok := ParseMarker(tc.want)
			if !ok {
				t.Fatalf("ParseMarker(%q) refused it", tc.want)
			}
			if diff := cmp.Diff(tc.m, got); diff != "" {
				t.Errorf("ParseMarker (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMarkerOwnership(t *testing.T) {
	mine := Marker{Org: "acme", UID: "u2", Cluster: "k1"}
	cases := map[string]struct {
		got                        Marker
		owns, remarks, sameCluster bool
	}{
		"ours":                         {Marker{Org: "acme", UID: "u2", Cluster: "k1"}, true, false, true},
		"ours, before the cluster":     {Marker{Org: "acme", UID: "u2"}, true, true, true},
		"an earlier UID, this cluster": {Marker{Org: "acme", UID: "u1", Cluster: "k1"}, false, false, true},
		"an earlier UID, old marker":   {Marker{Org: "acme", UID: "u1"}, false, false, true},
		"another cluster's":            {Marker{Org: "acme", UID: "u9", Cluster: "k2"}, false, false, false},
		"another name":                 {Marker{Org: "other", UID: "u2", Cluster: "k1"}, false, false, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := [3]bool{mine.Owns(tc.got), mine.Remarks(tc.got), mine.SameCluster(tc.got)}
			if diff := cmp.Diff([3]bool{tc.owns, tc.remarks, tc.sameCluster}, got); diff != "" {
				t.Errorf("Owns, Remarks, SameCluster (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseMarkerRefusesAnythingElse(t *testing.T) {
	cases := map[string]string{
		"empty":                 "",
		"a human comment":       "payroll database, do not touch",
		"no uid":                "orgforge:org=acme",
		"empty org":             "orgforge:org=;uid=1",
		"empty uid":             "orgforge:org=acme;uid=",
		"parts swapped":         "orgforge:uid=1;org=acme",
		"other prefix":          "orgforged:org=acme;uid=1",
		"trailing field":        "orgforge:org=acme;uid=1;x=2",
		"space":                 "orgforge:org=ac me;uid=1",
		"quote":                 "orgforge:org=acme';uid=1",
		"newline after":         "orgforge:org=acme;uid=1\n",
		"leading space":         " orgforge:org=acme;uid=1",
		"org too long":          "orgforge:org=" + strings.Repeat("a", 254) + ";uid=1",
		"uppercase prefix":      "ORGFORGE:org=acme;uid=1",
		"equals inside the uid": "orgforge:org=acme;uid=a=b",
		"empty cluster":         "orgforge:org=acme;uid=1;cluster=",
		"cluster before uid":    "orgforge:org=acme;cluster=k;uid=1",
		"two clusters":          "orgforge:org=acme;uid=1;cluster=k;cluster=j",
		"field after cluster":   "orgforge:org=acme;uid=1;cluster=k;x=2",
		"cluster too long":      "orgforge:org=acme;uid=1;cluster=" + strings.Repeat("k", 129),
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			if m, ok := ParseMarker(s); ok {
				t.Errorf("ParseMarker(%q) = %+v, want refused", s, m)
			}
		})
	}
}

func FuzzMarkerRoundTrip(f *testing.F) {
	f.Add("acme", "0b6c2a8e-6f4d-4b1e-9d57-3c1f0e2a9b10")
	f.Add("a.b-c", "x")
	f.Add("org=x", "1;uid=2")
	f.Add("", "")
	f.Add("orgforge:org=acme;uid=1", "ns/name")
	f.Add("cluster:5d1e", "1")
	f.Add("orgforge:org=acme;uid=1;cluster=k", "x")
	f.Fuzz(func(t *testing.T, org, uid string) {
		m := Marker{Org: org, UID: uid}
		if c, ok := strings.CutPrefix(org, "cluster:"); ok {
			m = Marker{Org: "acme", UID: uid, Cluster: c}
		}
		if m.Validate() == nil {
			got, ok := ParseMarker(m.String())
			if !ok || got != m {
				t.Fatalf("ParseMarker(%q) = %+v, %v; want %+v", m.String(), got, ok, m)
			}
		}
		// Whatever parses is a valid marker that prints back the same, so
		// that two different comments never name the same owner.
		for _, s := range []string{org, uid, org + uid} {
			if p, ok := ParseMarker(s); ok {
				if p.Validate() != nil || p.String() != s {
					t.Fatalf("ParseMarker(%q) = %+v, which prints %q", s, p, p.String())
				}
			}
		}
	})
}

// unquote reads an SQL string literal the way PostgreSQL's lexer does for
// the two forms quoteLiteral writes, and reports whether the literal ends
// exactly where the text does: a literal that ended early would let the rest
// of the text run as SQL.
func unquote(lit string) (string, bool) {
	escapes := strings.HasPrefix(lit, "E'")
	if escapes {
		lit = lit[1:]
	}
	if !strings.HasPrefix(lit, "'") {
		return "", false
	}
	var out strings.Builder
	for i := 1; i < len(lit); i++ {
		switch c := lit[i]; {
		case c == '\'' && i+1 < len(lit) && lit[i+1] == '\'':
			out.WriteByte('\'')
			i++
		case c == '\'':
			return out.String(), i == len(lit)-1
		case c == '\\' && escapes:
			if i+1 >= len(lit) || lit[i+1] != '\\' {
				return "", false // an escape quoteLiteral never writes
			}
			out.WriteByte('\\')
			i++
		default:
			out.WriteByte(c)
		}
	}
	return "", false // never closed
}

func FuzzQuoteLiteral(f *testing.F) {
	for _, s := range quoteCases {
		f.Add(s)
	}
	f.Add("a\x00b")
	f.Add("\xff")
	f.Fuzz(func(t *testing.T, s string) {
		q, err := quoteLiteral(s)
		if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
			if err == nil {
				t.Fatalf("quoteLiteral(%q) = %q, want refused", s, q)
			}
			return
		}
		if err != nil {
			t.Fatalf("quoteLiteral(%q): %v", s, err)
		}
		got, ok := unquote(q)
		if !ok || got != s {
			t.Fatalf("quoteLiteral(%q) = %s, which reads as %q (whole literal: %v)", s, q, got, ok)
		}
	})
}

// quoteCases are strings that have broken quoting code before.
var quoteCases = []string{
	"",
	"plain",
	"it's",
	"''",
	`back\slash`,
	`\'; DROP ROLE orgforge_admin; --`,
	`trailing\`,
	`\\`,
	"$$dollar$$",
	"line\nbreak\ttab",
	"E'not an escape'",
	"orgforge:org=acme;uid=1",
	"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy",
	"ünïcödé ✓",
}

func TestQuoteLiteralReadsBackTheSameStringInPostgreSQL(t *testing.T) {
	conn := superuser(t, "postgres")
	ctx := testContext(t)
	for _, scs := range []string{"on", "off"} {
		mustExec(t, conn, "SET standard_conforming_strings = "+scs)
		for _, s := range quoteCases {
			q, err := quoteLiteral(s)
			if err != nil {
				t.Fatalf("quoteLiteral(%q): %v", s, err)
			}
			var got string
			if err := conn.QueryRow(ctx, "SELECT "+q+"::text").Scan(&got); err != nil {
				t.Errorf("standard_conforming_strings=%s: SELECT %s: %v", scs, q, err)
				continue
			}
			if got != s {
				t.Errorf("standard_conforming_strings=%s: SELECT %s = %q, want %q", scs, q, got, s)
			}
		}
	}
}

func TestQuoteLiteralRefusesWhatPostgreSQLCannotStore(t *testing.T) {
	for _, s := range []string{"a\x00b", "\xc3\x28"} {
		if q, err := quoteLiteral(s); err == nil {
			t.Errorf("quoteLiteral(%q) = %s, want an error", s, q)
		}
	}
}
