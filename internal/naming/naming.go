// Package naming derives every external name of an Organization from its
// Kubernetes name: the database, the login role, the S3 prefix. The names are
// deterministic, so a crashed reconcile finds what it started.
package naming

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// MaxOrgNameLength keeps org_<name> within PostgreSQL's 63-byte identifiers.
const MaxOrgNameLength = 50

// DefaultPrefixTemplate is where an organization's objects live in the bucket.
const DefaultPrefixTemplate = "orgs/{name}/"

// ErrInvalidName is returned for a name that admission should have refused.
var ErrInvalidName = errors.New("invalid name")

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidateOrgName checks what the CRD enforces at admission, again, so that
// nothing is derived from a name the API server would not have accepted.
func ValidateOrgName(name string) error {
	if len(name) == 0 || len(name) > MaxOrgNameLength || !dnsLabel.MatchString(name) {
		return fmt.Errorf("%w: %q must be a DNS label of at most %d characters", ErrInvalidName, name, MaxOrgNameLength)
	}
	return nil
}

// DatabaseName is the organization's database: org_<name> with dashes
// mapped to underscores, so it needs no quoting in tenants' SQL.
func DatabaseName(org string) string {
	return "org_" + strings.ReplaceAll(org, "-", "_")
}

// RoleName is the organization's login role; it shares the database's name.
func RoleName(org string) string {
	return DatabaseName(org)
}

// LoginNames are the two login roles that take turns once the
// organization's database credentials rotate; RoleName stays the owner.
// The '$' cannot come from an organization name, so no organization's role
// is another's login: with "_1", org "a"'s login would be org "a-1"'s role.
func LoginNames(org string) [2]string {
	r := RoleName(org)
	return [2]string{r + "$1", r + "$2"}
}

// Namespace is the default namespace of an organization's Secrets.
func Namespace(org string) string {
	return "org-" + org
}

// DatabaseSecretName is the Secret holding the database login.
func DatabaseSecretName(org string) string { return org + "-database" }

// StorageSecretName is the Secret holding the bucket, prefix and key.
func StorageSecretName(org string) string { return org + "-storage" }

// ValidatePrefixTemplate checks a prefix template once, at start-up: it must
// contain {name} and yield a relative key prefix ending in '/'.
func ValidatePrefixTemplate(template string) error {
	if !strings.Contains(template, "{name}") {
		return fmt.Errorf("prefix template %q must contain {name}", template)
	}
	_, err := Prefix(template, "probe")
	return err
}

// Prefix fills {name} in template and checks the result is a safe prefix.
func Prefix(template, org string) (string, error) {
	if err := ValidateOrgName(org); err != nil {
		return "", err
	}
	p := strings.ReplaceAll(template, "{name}", org)
	switch {
	case !strings.HasSuffix(p, "/"):
		return "", fmt.Errorf("%w: prefix %q must end with '/'", ErrInvalidName, p)
	case strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("%w: prefix %q must not start with '/'", ErrInvalidName, p)
	case strings.Contains(p, "//"):
		return "", fmt.Errorf("%w: prefix %q must not contain an empty segment", ErrInvalidName, p)
	case strings.ContainsAny(p, "*?\\{}\x00"):
		return "", fmt.Errorf("%w: prefix %q must not contain wildcards or braces", ErrInvalidName, p)
	}
	for _, seg := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
		if seg == "." || seg == ".." {
			return "", fmt.Errorf("%w: prefix %q must not contain '.' or '..' segments", ErrInvalidName, p)
		}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: prefix %q must not contain control characters", ErrInvalidName, p)
		}
	}
	return p, nil
}
