package aurora

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	markerPrefix = "orgforge:"
	maxOrgLen    = 253 // a Kubernetes object name
	maxUIDLen    = 128
	// maxClusterLen bounds a cluster identity: a kube-system namespace
	// UID, or what --cluster-id gives.
	maxClusterLen = 128
	// maxIdentLen is PostgreSQL's NAMEDATALEN-1: longer names are silently
	// truncated, which would make an object unobservable by its full name.
	maxIdentLen = 63
)

// Marker says which Organization an object belongs to. It is stored as the
// comment of the tenant's role and database: the role's comment is the proof
// of ownership that a tenant cannot change, since COMMENT ON ROLE needs
// CREATEROLE. The UID tells a re-created Organization of the same name from
// the old one; the cluster tells which Kubernetes cluster's operator owns
// the object, so that two clusters pointed at one server by mistake do not
// take each other's organizations.
type Marker struct {
	// Org is the Organization's name.
	Org string
	// UID is the Organization's metadata.uid.
	UID string
	// Cluster is the owning operator's cluster identity (the kube-system
	// namespace UID, or --cluster-id). Empty in markers written before
	// it was recorded; those are taken as this cluster's.
	Cluster string
}

// String returns the comment that marks an object, e.g.
// orgforge:org=acme;uid=0b6c…;cluster=5d1e…. A marker without a cluster
// prints as the markers written before the cluster was recorded.
func (m Marker) String() string {
	s := markerPrefix + "org=" + m.Org + ";uid=" + m.UID
	if m.Cluster != "" {
		s += ";cluster=" + m.Cluster
	}
	return s
}

// Validate reports whether the marker can be written and read back: org and
// uid present, every part short and made of the letters of Kubernetes names
// and UIDs.
func (m Marker) Validate() error {
	if err := markerPart("org", m.Org, maxOrgLen); err != nil {
		return err
	}
	if err := markerPart("uid", m.UID, maxUIDLen); err != nil {
		return err
	}
	if m.Cluster == "" {
		return nil
	}
	return markerPart("cluster", m.Cluster, maxClusterLen)
}

// Owns reports whether an object marked got belongs to the Organization of
// m: same name and UID. The cluster part does not decide, since a UID is
// one Organization's in whichever cluster; an old marker without it is the
// same Organization's (see Remarks).
func (m Marker) Owns(got Marker) bool { return got.Org == m.Org && got.UID == m.UID }

// Remarks reports whether an object marked got, which m owns, is to be
// marked again: its marker predates the cluster part and m has one.
func (m Marker) Remarks(got Marker) bool {
	return m.Owns(got) && got.Cluster == "" && m.Cluster != ""
}

// SameCluster reports whether got was written by an operator of m's cluster
// identity, or before markers recorded one.
func (m Marker) SameCluster(got Marker) bool { return got.Cluster == "" || got.Cluster == m.Cluster }

func markerPart(what, v string, maxLen int) error {
	if v == "" {
		return fmt.Errorf("%w: ownership marker has no %s", ErrInvalid, what)
	}
	if len(v) > maxLen {
		return fmt.Errorf("%w: ownership marker %s is longer than %d characters", ErrInvalid, what, maxLen)
	}
	for i := 0; i < len(v); i++ {
		if !markerChar(v[i]) {
			return fmt.Errorf("%w: ownership marker %s %q has a character other than letters, digits and ._:/-", ErrInvalid, what, v)
		}
	}
	return nil
}

func markerChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._:/-", c) >= 0
}

// ParseMarker reads a comment written by Marker.String. It accepts nothing
// else, so that a parsed marker prints back to the same comment.
func ParseMarker(s string) (Marker, bool) {
	rest, ok := strings.CutPrefix(s, markerPrefix+"org=")
	if !ok {
		return Marker{}, false
	}
	org, uid, ok := strings.Cut(rest, ";uid=")
	if !ok {
		return Marker{}, false
	}
	uid, cluster, withCluster := strings.Cut(uid, ";cluster=")
	if withCluster && cluster == "" {
		return Marker{}, false
	}
	m := Marker{Org: org, UID: uid, Cluster: cluster}
	if m.Validate() != nil {
		return Marker{}, false
	}
	return m, true
}

// validName checks a role, database or extension name before it reaches the
// server, which would truncate a long one without error.
func validName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s name", ErrInvalid, kind)
	case len(name) > maxIdentLen:
		return fmt.Errorf("%w: %s name %q is longer than %d bytes", ErrInvalid, kind, name, maxIdentLen)
	case strings.IndexByte(name, 0) >= 0 || !utf8.ValidString(name):
		return fmt.Errorf("%w: %s name %q is not valid UTF-8 text", ErrInvalid, kind, name)
	}
	return nil
}

var errUnquotable = errors.New("string holds a NUL byte or invalid UTF-8")

// quoteLiteral quotes s as an SQL string literal, for the DDL clauses that
// take no parameters (PASSWORD, COMMENT … IS). Quotes are doubled; a string
// with a backslash becomes an escape string (E'…') with backslashes doubled, which
// reads the same whatever standard_conforming_strings says. PostgreSQL
// cannot store NUL or invalid UTF-8, so those are refused rather than
// mangled.
func quoteLiteral(s string) (string, error) {
	if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
		return "", errUnquotable
	}
	var b strings.Builder
	b.Grow(len(s) + 3)
	if strings.IndexByte(s, '\\') >= 0 {
		b.WriteByte('E')
	}
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\'':
			b.WriteString("''")
		case '\\':
			b.WriteString(`\\`)
		default:
			b.WriteByte(s[i])
		}
	}
	b.WriteByte('\'')
	return b.String(), nil
}
