package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCountSQLSplitsTheOperatorsStatementsByKind(t *testing.T) {
	log := strings.Join([]string{
		`2026-12-01 13:46:01.120 UTC [101] app=orgforge LOG:  statement: -- ping`,
		`2026-12-01 13:46:01.121 UTC [101] app=orgforge LOG:  execute stmtcache_5d1e: SELECT 'r', r.rolname::text, c.description,`,
		`		r.rolcanlogin, r.rolinherit`,
		`2026-12-01 13:46:01.122 UTC [101] app=orgforge LOG:  execute <unnamed>: select 1`,
		`2026-12-01 13:46:01.123 UTC [101] app=orgforge LOG:  statement: ALTER ROLE "org_a" WITH CONNECTION LIMIT 10`,
		`2026-12-01 13:46:01.124 UTC [101] app=orgforge LOG:  statement: begin`,
		`2026-12-01 13:46:01.125 UTC [102] app=orgforge-raw LOG:  statement: REVOKE ALL ON DATABASE "org_b" FROM PUBLIC`,
		`2026-12-01 13:46:01.126 UTC [104] app= LOG:  checkpoint starting: immediate force wait`,
		`2026-12-01 13:46:01.127 UTC [101] app=orgforge ERROR:  role "org_a" already exists`,
		`2026-12-01 13:46:01.127 UTC [101] app=orgforge STATEMENT:  CREATE ROLE "org_a" WITH LOGIN`,
	}, "\n")
	got, err := countSQL(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]int{
		"orgforge":     {"ping": 1, "SELECT": 2, "DDL": 1, "BEGIN": 1},
		"orgforge-raw": {"DDL": 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts (-want +got):\n%s", diff)
	}
	cost := sqlCost(got, "orgforge", 10)
	if cost.SQLStatements != 5 || cost.SQLPerOrgPass != 0.5 {
		t.Errorf("sqlCost = %+v, want 5 statements, 0.5 per organization per pass", cost)
	}
	if k := kinds(cost.SQLByKind); k != "SELECT 2, BEGIN 1, DDL 1, ping 1" {
		t.Errorf("kinds = %q", k)
	}
}
