package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// MarkerName is the name of the object that claims a prefix for an
// organization, right under the prefix.
const MarkerName = ".orgforge"

// maxPrefixLen leaves room under S3's 1024-byte key limit for the marker and
// for the organization's own object names.
const maxPrefixLen = 512

var (
	bucketRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	orgRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$`)
	iamPathRE = regexp.MustCompile(`^/([A-Za-z0-9._-]+/)*$`)
)

// validateBucket applies S3's bucket naming rules, so that a bucket name can
// be put in an ARN without changing its meaning.
func validateBucket(bucket string) error {
	switch {
	case !bucketRE.MatchString(bucket),
		strings.Contains(bucket, ".."), strings.Contains(bucket, ".-"), strings.Contains(bucket, "-."),
		net.ParseIP(bucket) != nil,
		strings.HasPrefix(bucket, "xn--"), strings.HasPrefix(bucket, "sthree-"),
		strings.HasSuffix(bucket, "-s3alias"), strings.HasSuffix(bucket, "--ol-s3"),
		strings.HasSuffix(bucket, ".mrap"), strings.HasSuffix(bucket, "--x-s3"),
		strings.HasSuffix(bucket, "--table-s3"):
		return fmt.Errorf("%w: bucket %q is not a valid S3 bucket name", ErrInvalid, bucket)
	}
	return nil
}

// validatePrefix accepts the prefixes orgforge gives organizations: relative
// paths of plain segments ending in "/". Everything that would mean more than
// itself in a policy (wildcards "*" and "?", policy variables "${...}") or in
// a path ("..", empty segments, a leading "/") is refused, and so is any
// character outside a conservative ASCII set.
func validatePrefix(prefix string) error {
	invalid := func(why string) error {
		return fmt.Errorf("%w: prefix %q %s", ErrInvalid, prefix, why)
	}
	switch {
	case prefix == "":
		return invalid("is empty")
	case !strings.HasSuffix(prefix, "/"):
		return invalid(`must end with "/"`)
	case strings.HasPrefix(prefix, "/"):
		return invalid(`must not start with "/"`)
	case len(prefix) > maxPrefixLen:
		return invalid(fmt.Sprintf("is longer than %d bytes", maxPrefixLen))
	case strings.Contains(prefix, "//"):
		return invalid("has an empty segment")
	case strings.Contains(prefix, ".."):
		return invalid(`must not contain ".."`)
	}
	for _, r := range prefix {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("/-_.=@+,!'()", r):
		default:
			return invalid(fmt.Sprintf("must not contain %q; use letters, digits and /-_.=@+,!'()", r))
		}
	}
	return nil
}

func validateOrg(org string) error {
	if !orgRE.MatchString(org) {
		return fmt.Errorf("%w: organization name %q is not a DNS label of at most 50 characters", ErrInvalid, org)
	}
	return nil
}

// policyDocument is an IAM policy document, in the element order AWS uses.
type policyDocument struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid       string                             `json:"Sid,omitempty"`
	Effect    string                             `json:"Effect"`
	Action    stringOrList                       `json:"Action"`
	Resource  stringOrList                       `json:"Resource"`
	Condition map[string]map[string]stringOrList `json:"Condition,omitempty"`
}

// stringOrList is a policy element that may be written as one string or as a
// list of strings; both decode to a list.
type stringOrList []string

func (l *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringOrList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*l = many
	return nil
}

// Object actions an organization's user has on its prefix: enough to read,
// write and delete its objects, multipart uploads included.
var prefixObjectActions = stringOrList{"s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"}

// PolicyDocument builds the inline policy of an organization's IAM user:
// object access under arn:aws:s3:::bucket/prefix*, listing of the bucket only
// for s3:prefix values under the prefix, and an explicit deny on rewriting or
// deleting the prefix's marker, so that the organization cannot give its
// prefix away. It returns ErrInvalid for a bucket or prefix that could widen
// the grant.
func PolicyDocument(bucket, prefix string) (string, error) {
	doc, err := buildPolicy(bucket, prefix)
	if err != nil {
		return "", err
	}
	return encodePolicy(doc)
}

func encodePolicy(doc policyDocument) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("encoding policy document: %w", err)
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func buildPolicy(bucket, prefix string) (policyDocument, error) {
	if err := validateBucket(bucket); err != nil {
		return policyDocument{}, err
	}
	if err := validatePrefix(prefix); err != nil {
		return policyDocument{}, err
	}
	bucketARN := "arn:aws:s3:::" + bucket
	return policyDocument{
		Version: "2012-10-17",
		Statement: []policyStatement{{
			Sid:      "ObjectsInPrefix",
			Effect:   "Allow",
			Action:   prefixObjectActions,
			Resource: stringOrList{bucketARN + "/" + prefix + "*"},
		}, {
			Sid:       "ListPrefix",
			Effect:    "Allow",
			Action:    stringOrList{"s3:ListBucket"},
			Resource:  stringOrList{bucketARN},
			Condition: map[string]map[string]stringOrList{"StringLike": {"s3:prefix": {prefix, prefix + "*"}}},
		}, {
			Sid:      "KeepMarker",
			Effect:   "Deny",
			Action:   stringOrList{"s3:DeleteObject", "s3:PutObject"},
			Resource: stringOrList{bucketARN + "/" + prefix + MarkerName},
		}},
	}, nil
}

// samePolicy reports whether the policy document current, as IAM returns it
// once URL-decoded, means the same as want: element order, spacing and a
// single string written for a one-element list do not matter. A document
// with elements orgforge does not write (NotAction, Principal...) is never
// the same.
func samePolicy(current string, want policyDocument) bool {
	var got policyDocument
	dec := json.NewDecoder(strings.NewReader(current))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil || dec.More() {
		return false
	}
	return reflect.DeepEqual(normalizePolicy(got), normalizePolicy(want))
}

func normalizePolicy(doc policyDocument) policyDocument {
	out := policyDocument{Version: doc.Version}
	for _, st := range doc.Statement {
		n := policyStatement{
			Sid:      st.Sid,
			Effect:   st.Effect,
			Action:   sortedSet(st.Action),
			Resource: sortedSet(st.Resource),
		}
		if len(st.Condition) > 0 {
			n.Condition = map[string]map[string]stringOrList{}
			for op, keys := range st.Condition {
				n.Condition[op] = map[string]stringOrList{}
				for k, v := range keys {
					n.Condition[op][k] = sortedSet(v)
				}
			}
		}
		out.Statement = append(out.Statement, n)
	}
	slices.SortFunc(out.Statement, func(a, b policyStatement) int {
		ka, _ := json.Marshal(a)
		kb, _ := json.Marshal(b)
		return bytes.Compare(ka, kb)
	})
	return out
}

func sortedSet(l stringOrList) stringOrList {
	out := slices.Clone(l)
	slices.Sort(out)
	return slices.Compact(out)
}
