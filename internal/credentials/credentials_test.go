package credentials_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orgforge/orgforge/internal/credentials"
	"github.com/orgforge/orgforge/internal/devstack"
)

func TestNewPasswordIsLongRandomAndURISafe(t *testing.T) {
	seen := map[string]bool{}
	safe := regexp.MustCompile(`^[A-Za-z0-9]{32}$`)
	for range 200 {
		p, err := credentials.NewPassword()
		if err != nil {
			t.Fatal(err)
		}
		if !safe.MatchString(p) {
			t.Fatalf("password %q is not 32 letters and digits", p)
		}
		if seen[p] {
			t.Fatalf("password repeated after %d draws", len(seen))
		}
		seen[p] = true
	}
}

func TestVerifierHasPostgresFormatAndMatchesOnlyItsPassword(t *testing.T) {
	v, err := credentials.SCRAMVerifier("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	format := regexp.MustCompile(`^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$`)
	if !format.MatchString(v) {
		t.Fatalf("verifier %q is not in PostgreSQL's format", v)
	}
	if strings.Contains(v, "correct horse") {
		t.Fatal("verifier contains the password")
	}
	ok, err := credentials.VerifyPassword(v, "correct horse")
	if err != nil || !ok {
		t.Errorf("VerifyPassword(right) = %v, %v", ok, err)
	}
	ok, err = credentials.VerifyPassword(v, "correct horsE")
	if err != nil || ok {
		t.Errorf("VerifyPassword(wrong) = %v, %v", ok, err)
	}
	again, _ := credentials.SCRAMVerifier("correct horse")
	if again == v {
		t.Error("two verifiers of one password share a salt")
	}
}

func TestVerifierRefusesPasswordsPostgresWouldNormalise(t *testing.T) {
	for _, p := range []string{"pässword", "tab\there", "nul\x00"} {
		if _, err := credentials.SCRAMVerifier(p); !errors.Is(err, credentials.ErrUnsupportedPassword) {
			t.Errorf("SCRAMVerifier(%q) err = %v, want ErrUnsupportedPassword", p, err)
		}
	}
}

func TestVerifyPasswordRejectsMalformedVerifiers(t *testing.T) {
	for _, v := range []string{"", "md5abc", "SCRAM-SHA-256$x:abc$def:ghi", "SCRAM-SHA-256$4096:c2FsdA==$short:short"} {
		if _, err := credentials.VerifyPassword(v, "p"); err == nil {
			t.Errorf("VerifyPassword(%q) accepted a malformed verifier", v)
		}
	}
}

// TestPostgresAcceptsOurVerifierForLogin proves the verifier format against a
// real server: a role whose password is set from our verifier logs in with
// the password and not with another.
func TestPostgresAcceptsOurVerifierForLogin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := devstack.StartPostgres(ctx, t.TempDir(), devstack.PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Close() }()
	password, err := credentials.NewPassword()
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := credentials.SCRAMVerifier(password)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(ctx, pg.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE ROLE scram_probe LOGIN PASSWORD '%s'", verifier)); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.DSN("scram_probe", password, "postgres"))
	if err != nil {
		t.Fatalf("login with the password failed: %v", err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "scram_probe" {
		t.Errorf("current_user = %q, %v", user, err)
	}
	_ = conn.Close(ctx)
	if c, err := pgx.Connect(ctx, pg.DSN("scram_probe", password+"x", "postgres")); err == nil {
		_ = c.Close(ctx)
		t.Error("login with a wrong password succeeded")
	}
}
