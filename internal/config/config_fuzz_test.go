package config

import (
	"net"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// FuzzAdminDSN feeds the admin DSN reader anything a mounted Secret could
// hold. It never panics, and whatever it makes of the input, neither its
// error nor the endpoint it prints carries the DSN's password.
func FuzzAdminDSN(f *testing.F) {
	for _, s := range []string{
		"postgres://admin:s3cr3t@db.example:5432/postgres?sslmode=require",
		"postgresql://admin:p%40ss@[::1]:6543/app",
		"postgres://admin:s3cr3t@db.example:notaport/postgres",
		"postgres://:s3cr3t@/postgres",
		"host=db user=admin password=s3cr3t",
		"mysql://admin:s3cr3t@db/x",
		"postgres://admin:s3cr3t@db.example:5432/postgres?sslmode=require%",
		"postgres://admin:s3cr3t@db%zz/",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		secret := passwordOf(dsn)
		var d Database
		err := d.fillFromDSN(dsn)
		if secret == "" || len(secret) < 4 {
			return
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("the error for %q quotes its password: %v", dsn, err)
		}
		if err == nil && strings.Contains(d.AdminEndpoint(), secret) && !strings.Contains(d.Host+d.User, secret) {
			t.Fatalf("AdminEndpoint of %q shows its password: %s", dsn, d.AdminEndpoint())
		}
	})
}

// passwordOf is the password a URL-form DSN carries, as far as a lenient
// reading can tell.
func passwordOf(dsn string) string {
	_, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return ""
	}
	userinfo, _, ok := strings.Cut(rest, "@")
	if !ok {
		return ""
	}
	_, password, ok := strings.Cut(userinfo, ":")
	if !ok {
		return ""
	}
	if p, err := url.PathUnescape(password); err == nil {
		return p
	}
	return password
}

// hostname is what --database-host holds when it is not an IP address.
var hostname = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$`)

// FuzzBuildDSN checks that the DSN built from --database-* parts reads back
// the same, in orgforge's reader and in pgx's, whatever the password holds.
func FuzzBuildDSN(f *testing.F) {
	f.Add("db.example", 5432, "orgforge_admin", "s3cr3t", "postgres", "verify-full")
	f.Add("::1", 6543, "admin@corp", "p@ss:w/o?r#d&x=y%", "app db", "disable")
	f.Add("10.0.0.1", 1, "a", "'; DROP ROLE x; --", "template1", "require")
	f.Fuzz(func(t *testing.T, host string, port int, user, password, name, sslmode string) {
		if !hostname.MatchString(host) && net.ParseIP(host) == nil ||
			port < 1 || port > 65535 || user == "" || name == "" ||
			strings.ContainsRune(user+password+name+sslmode, 0) {
			// Not parts a flag could give that PostgreSQL would accept.
			return
		}
		d := Database{Host: host, Port: port, User: user, Name: name, SSLMode: sslmode}
		dsn := d.buildDSN(password)
		var back Database
		if err := back.fillFromDSN(dsn); err != nil {
			t.Fatalf("buildDSN = %q, which fillFromDSN refuses: %v", dsn, err)
		}
		if back.Host != host || back.Port != port || back.User != user || back.Name != name || back.SSLMode != sslmode {
			t.Fatalf("buildDSN(%+v) = %q reads back as %+v", d, dsn, back)
		}
		if sslmode != "disable" && sslmode != "allow" && sslmode != "prefer" && sslmode != "require" && sslmode != "verify-ca" && sslmode != "verify-full" {
			return
		}
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatalf("pgx cannot parse buildDSN's %q: %v", dsn, err)
		}
		if cfg.User != user || cfg.Password != password || cfg.Database != name || int(cfg.Port) != port {
			t.Fatalf("pgx reads %q as user %q password %q database %q port %d", dsn, cfg.User, cfg.Password, cfg.Database, cfg.Port)
		}
	})
}
