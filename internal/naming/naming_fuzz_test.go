package naming_test

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
)

// FuzzOrgNameMatchesAdmission checks that the operator accepts exactly the
// names the API server admits for an Organization (an RFC 1123 name that
// the CRD's rules also hold to a DNS label of at most 50 characters), so
// that nothing is derived from a name admission would have refused.
func FuzzOrgNameMatchesAdmission(f *testing.F) {
	for _, s := range []string{"acme", "a", "-a", "a-", "a.b", "A", strings.Repeat("a", 50), strings.Repeat("a", 51),
		"\u0440ostgres", "acme\u200b", "..", "a/b", "0", "x--y", "adm\u0131n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		admitted := len(validation.IsDNS1123Subdomain(name)) == 0 &&
			len(validation.IsDNS1123Label(name)) == 0 && len([]rune(name)) <= 50
		err := naming.ValidateOrgName(name)
		if admitted != (err == nil) {
			t.Fatalf("ValidateOrgName(%q) = %v, but the API server admits it: %v", name, err, admitted)
		}
	})
}

// FuzzPrefix checks that any prefix naming.Prefix makes, from any template
// that passes start-up validation and any admitted name, is relative, ends
// in "/", has no empty, "." or ".." segment, holds the name, and reaches
// the IAM policy builder either confined to itself or refused as invalid.
func FuzzPrefix(f *testing.F) {
	for _, s := range [][2]string{
		{naming.DefaultPrefixTemplate, "acme"}, {"tenants/{name}/data/", "a"}, {"{name}/", "x"},
		{"../{name}/", "acme"}, {"orgs/{name}/../", "acme"}, {"orgs/*/{name}/", "acme"}, {"/{name}/", "acme"},
		{"orgs/{name}", "acme"}, {"a//{name}/", "acme"}, {"orgs/${aws:username}/{name}/", "acme"}, {"o\x00/{name}/", "acme"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, template, org string) {
		if naming.ValidatePrefixTemplate(template) != nil {
			return
		}
		p, err := naming.Prefix(template, org)
		if naming.ValidateOrgName(org) != nil {
			if err == nil {
				t.Fatalf("Prefix(%q, %q) accepted an invalid name", template, org)
			}
			return
		}
		if err != nil {
			return
		}
		if !strings.HasSuffix(p, "/") || strings.HasPrefix(p, "/") || !strings.Contains(p, org) {
			t.Fatalf("Prefix(%q, %q) = %q", template, org, p)
		}
		for _, seg := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("Prefix(%q, %q) = %q has segment %q", template, org, p, seg)
			}
		}
		doc, err := storage.PolicyDocument("orgforge-tenants", p)
		if err != nil {
			if !errors.Is(err, storage.ErrInvalid) {
				t.Fatalf("PolicyDocument(%q): %v", p, err)
			}
			return
		}
		if !strings.Contains(doc, `"arn:aws:s3:::orgforge-tenants/`+p+`*"`) {
			t.Fatalf("the policy for %q does not confine it to the prefix: %s", p, doc)
		}
	})
}
