package naming

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestDerivedNamesForAnOrganization(t *testing.T) {
	cases := map[string]struct {
		org, db, ns, prefix string
	}{
		"plain":      {org: "acme", db: "org_acme", ns: "org-acme", prefix: "orgs/acme/"},
		"dashes":     {org: "acme-eu-1", db: "org_acme_eu_1", ns: "org-acme-eu-1", prefix: "orgs/acme-eu-1/"},
		"dangerous":  {org: "postgres", db: "org_postgres", ns: "org-postgres", prefix: "orgs/postgres/"},
		"longest ok": {org: strings.Repeat("a", 50), db: "org_" + strings.Repeat("a", 50), ns: "org-" + strings.Repeat("a", 50), prefix: "orgs/" + strings.Repeat("a", 50) + "/"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := DatabaseName(tc.org); got != tc.db {
				t.Errorf("DatabaseName = %q, want %q", got, tc.db)
			}
			if got := RoleName(tc.org); got != tc.db {
				t.Errorf("RoleName = %q, want %q", got, tc.db)
			}
			if got := Namespace(tc.org); got != tc.ns {
				t.Errorf("Namespace = %q, want %q", got, tc.ns)
			}
			got, err := Prefix(DefaultPrefixTemplate, tc.org)
			if err != nil || got != tc.prefix {
				t.Errorf("Prefix = %q, %v; want %q", got, err, tc.prefix)
			}
		})
	}
}

func TestPrefixRefusesNamesAndTemplatesThatEscape(t *testing.T) {
	cases := map[string]struct{ template, org string }{
		"traversal in name":       {DefaultPrefixTemplate, ".."},
		"slash in name":           {DefaultPrefixTemplate, "a/b"},
		"upper case name":         {DefaultPrefixTemplate, "Acme"},
		"too long name":           {DefaultPrefixTemplate, strings.Repeat("a", 51)},
		"empty name":              {DefaultPrefixTemplate, ""},
		"template without slash":  {"orgs/{name}", "acme"},
		"absolute template":       {"/orgs/{name}/", "acme"},
		"template with dot-dot":   {"../{name}/", "acme"},
		"template with wildcard":  {"orgs/*/{name}/", "acme"},
		"template with empty seg": {"orgs//{name}/", "acme"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if p, err := Prefix(tc.template, tc.org); !errors.Is(err, ErrInvalidName) {
				t.Errorf("Prefix(%q, %q) = %q, %v; want ErrInvalidName", tc.template, tc.org, p, err)
			}
		})
	}
}

func TestPrefixTemplateMustNameTheOrganization(t *testing.T) {
	if err := ValidatePrefixTemplate("orgs/shared/"); err == nil {
		t.Error("a template without {name} was accepted")
	}
	if err := ValidatePrefixTemplate("tenants/{name}/data/"); err != nil {
		t.Errorf("a good template was refused: %v", err)
	}
}

var safeIdentifier = regexp.MustCompile(`^org_[a-z0-9_]+$`)

// FuzzDerivedNames checks, for any input, that a name passing validation
// yields a database name PostgreSQL takes unquoted within 63 bytes, distinct
// per name, and a prefix that stays inside orgs/.
func FuzzDerivedNames(f *testing.F) {
	for _, s := range []string{"acme", "a", "acme-eu", "postgres", "template1", "rds-superuser", "..", "a/b", "x'; DROP DATABASE y; --", strings.Repeat("z", 50), "ａcme", "acme\u200b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, org string) {
		if ValidateOrgName(org) != nil {
			if _, err := Prefix(DefaultPrefixTemplate, org); err == nil {
				t.Fatalf("Prefix accepted invalid name %q", org)
			}
			return
		}
		db := DatabaseName(org)
		if len(db) > 63 || !safeIdentifier.MatchString(db) {
			t.Fatalf("DatabaseName(%q) = %q is not a safe identifier", org, db)
		}
		if strings.ReplaceAll(strings.TrimPrefix(db, "org_"), "_", "-") != org {
			t.Fatalf("DatabaseName(%q) = %q does not map back to the name", org, db)
		}
		p, err := Prefix(DefaultPrefixTemplate, org)
		if err != nil {
			t.Fatalf("Prefix(%q): %v", org, err)
		}
		if p != "orgs/"+org+"/" || strings.Count(p, "/") != 2 {
			t.Fatalf("Prefix(%q) = %q escapes orgs/", org, p)
		}
	})
}
