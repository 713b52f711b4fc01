package chaos_test

import (
	"slices"
	"strings"
	"testing"
)

// TestSecretFinderFindsEverySecret guards the hygiene check itself: a
// finder that missed secrets would make "secrets leaked: 0" meaningless.
func TestSecretFinderFindsEverySecret(t *testing.T) {
	secrets := map[string]string{
		"Q2xZ8vT1mN4pL7rK0sW3yB6cF9dH5jGa": "a password",
		"wJalrXUtnFEMI/K7MDENG+bPxRfiCYzz": "a secret key",
		"short-one":                        "a short secret",
	}
	f := newSecretFinder(secrets)
	cases := map[string]struct {
		text string
		want []string
	}{
		"none":               {strings.Repeat("nothing to see ", 100), nil},
		"inside a DSN":       {"postgresql://org_a:Q2xZ8vT1mN4pL7rK0sW3yB6cF9dH5jGa@db:5432/org_a", []string{"a password"}},
		"run into words":     {"keywJalrXUtnFEMI/K7MDENG+bPxRfiCYzzend", []string{"a secret key"}},
		"at the very end":    {"x=Q2xZ8vT1mN4pL7rK0sW3yB6cF9dH5jGa", []string{"a password"}},
		"short and long":     {"short-one and wJalrXUtnFEMI/K7MDENG+bPxRfiCYzz", []string{"a secret key", "a short secret"}},
		"a prefix only":      {"Q2xZ8vT1mN4pL7rK0sW3yB6cF9dH5jG", nil},
		"the same one twice": {"Q2xZ8vT1mN4pL7rK0sW3yB6cF9dH5jGa Q2xZ8vT1mN4pL7rK0sW3yB6cF9dH5jGa", []string{"a password"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := f.find([]byte(tc.text))
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("find = %q, want %q", got, tc.want)
			}
		})
	}
	if !dsnWithPassword.MatchString("dsn postgres://orgforge_admin:hunter22@127.0.0.1:5432/postgres") {
		t.Error("a DSN with a password goes unnoticed")
	}
	if dsnWithPassword.MatchString("postgres://orgforge_admin@127.0.0.1:5432/postgres") {
		t.Error("a DSN without a password is taken for one")
	}
}
