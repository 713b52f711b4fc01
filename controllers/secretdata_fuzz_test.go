package controllers

import (
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/naming"
)

// hostname is what --tenant-database-host holds when it is not an IP
// address.
var hostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// FuzzDatabaseSecretData builds the database Secret from any admitted
// organization name and pool, any password and any tenant endpoint the
// operator could be configured with: the uri opens, as pgxpool reads it,
// exactly the org's database as its role with that password and pool, and
// the JDBC URL never carries the password.
func FuzzDatabaseSecretData(f *testing.F) {
	f.Add("acme", "Pa55wordPa55word", int32(2), int32(10), "db.example", 5432, "require")
	f.Add("postgres", "p@ss:w/o?r#d&x=y%", int32(0), int32(1), "::1", 6543, "disable")
	f.Add("a-b", "'; DROP ROLE x; --", int32(1000), int32(1000), "10.0.0.1", 1, "verify-full")
	f.Fuzz(func(t *testing.T, org, password string, min, max int32, host string, port int, sslmode string) {
		if naming.ValidateOrgName(org) != nil || min < 0 || max < 1 || min > max || max > 1000 ||
			strings.ContainsRune(password, 0) ||
			!hostname.MatchString(host) && net.ParseIP(host) == nil ||
			port < 1 || port > 65535 {
			// Not what admission and the operator's flags let through.
			return
		}
		switch sslmode {
		case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		default:
			return
		}
		o := &tenancyv1alpha1.Organization{}
		o.Name = org
		o.Spec.Database.Pool = tenancyv1alpha1.PoolSpec{MinConnections: min, MaxConnections: max}
		s := newScope(o)
		s.tenant = TenantEndpoint{Host: host, Port: port, SSLMode: sslmode}
		data := databaseSecretData(s, s.role, password)

		uri := string(data["uri"])
		cfg, err := pgxpool.ParseConfig(uri)
		if err != nil {
			t.Fatalf("the uri for %q does not parse: %v", org, err)
		}
		c := cfg.ConnConfig
		want := naming.DatabaseName(org)
		if c.User != want || c.Database != want || c.Password != password || c.Host != host || int(c.Port) != port ||
			cfg.MaxConns != max || cfg.MinConns != min {
			t.Fatalf("the uri %q reads as user %q db %q password %q host %q port %d pool %d-%d", uri,
				c.User, c.Database, c.Password, c.Host, c.Port, cfg.MinConns, cfg.MaxConns)
		}
		if len(password) >= 4 && strings.Contains(string(data["jdbc-url"]), password) {
			t.Fatalf("the JDBC URL carries the password: %s", data["jdbc-url"])
		}
	})
}
