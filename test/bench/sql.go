package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/orgforge/orgforge/internal/devstack"
)

// SQLCost is every SQL statement the operator sent in a window, from the
// server's log, and what it comes to per organization per pass.
type SQLCost struct {
	// SQLStatements counts the operator's statements: queries, DDL and
	// the pool's pings; SQLByKind splits them by first keyword (DDL for
	// CREATE, ALTER, DROP, GRANT, REVOKE and COMMENT).
	SQLStatements int            `json:"sqlStatements"`
	SQLByKind     map[string]int `json:"sqlByKind,omitempty"`
	// SQLPerOrgPass is SQLStatements over the reconciles of the window.
	SQLPerOrgPass float64 `json:"sqlPerOrgPass"`
}

// logEveryStatement makes the server log every statement of the
// operator's admin role in the sessions it opens from now on: a role's
// setting wins over the server's log_statement=ddl. restore puts it back.
func (e *env) logEveryStatement(ctx context.Context) (restore func(), err error) {
	if _, err := e.su.Exec(ctx, fmt.Sprintf("ALTER ROLE %s SET log_statement = 'all'", devstack.AdminUser)); err != nil {
		return nil, fmt.Errorf("logging every statement: %w", err)
	}
	return func() {
		_, _ = e.su.Exec(context.Background(), fmt.Sprintf("ALTER ROLE %s RESET log_statement", devstack.AdminUser))
	}, nil
}

// sqlSince counts, per application_name, the statements logged after
// offset from, by kind.
func (l *pgLog) sqlSince(from int64) (map[string]map[string]int, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, err
	}
	return countSQL(f)
}

// countSQL counts the statement lines of a log written with
// log_line_prefix '%m [%p] app=%a ', per application name and kind.
func countSQL(r io.Reader) (map[string]map[string]int, error) {
	counts := map[string]map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		_, rest, ok := strings.Cut(sc.Text(), " app=")
		if !ok {
			continue
		}
		app, msg, ok := strings.Cut(rest, " ")
		if !ok {
			continue
		}
		var stmt string
		switch {
		case strings.HasPrefix(msg, "LOG:  statement: "):
			stmt = strings.TrimPrefix(msg, "LOG:  statement: ")
		case strings.HasPrefix(msg, "LOG:  execute "):
			// "execute <name>: SELECT ...", the extended protocol's.
			_, stmt, _ = strings.Cut(strings.TrimPrefix(msg, "LOG:  execute "), ": ")
		default:
			continue
		}
		if counts[app] == nil {
			counts[app] = map[string]int{}
		}
		counts[app][statementKind(stmt)]++
	}
	return counts, sc.Err()
}

// statementKind is the kind a statement is counted as.
func statementKind(stmt string) string {
	stmt = strings.TrimSpace(stmt)
	if strings.HasPrefix(stmt, "--") {
		return "ping"
	}
	word, _, _ := strings.Cut(stmt, " ")
	word = strings.ToUpper(word)
	switch word {
	case "CREATE", "ALTER", "DROP", "GRANT", "REVOKE", "COMMENT":
		return "DDL"
	case "SELECT", "BEGIN", "COMMIT", "ROLLBACK", "SET":
		return word
	}
	return "other"
}

// sqlCost is app's statements in counts, over the drift checks.
func sqlCost(counts map[string]map[string]int, app string, checks int) SQLCost {
	c := SQLCost{SQLByKind: counts[app]}
	for _, n := range c.SQLByKind {
		c.SQLStatements += n
	}
	if checks > 0 {
		c.SQLPerOrgPass = round(float64(c.SQLStatements)/float64(checks), 3)
	}
	return c
}

// sqlTarget is the budget of SQL statements per organization per
// pass at rest.
func sqlTarget(st *SteadyResult, status func(measured, met bool) string) Target {
	t := Target{Name: "SQL statements per organization per pass at rest", Want: "≤ 0.2", Got: "-", Status: status(false, false)}
	if st == nil {
		return t
	}
	t.Name += fmt.Sprintf(" (N=%d, %.1f passes)", st.N, st.Passes)
	t.Got = fmt.Sprintf("%.3f (%d statements: %s)", st.SQLPerOrgPass, st.SQLStatements, kinds(st.SQLByKind))
	t.Status = status(st.Passes >= 3, st.SQLPerOrgPass <= 0.2)
	return t
}

// kinds lists counts by kind, largest first.
func kinds(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// steadySQLLine says, under the steady state's table, what the window's
// statements were.
func steadySQLLine(ss *SteadyResult) string {
	return fmt.Sprintf("SQL statements of the operator in the window (every statement logged for its sessions): **%d**, %.3f per organization per pass (%s).\n\n",
		ss.SQLStatements, ss.SQLPerOrgPass, kinds(ss.SQLByKind))
}
