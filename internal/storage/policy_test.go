package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func jsonStrict(doc string, v any) error {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func TestPolicyDocumentConfinesTheUserToItsPrefix(t *testing.T) {
	doc, err := PolicyDocument("orgforge-tenants", "orgs/acme/")
	if err != nil {
		t.Fatalf("PolicyDocument: %v", err)
	}
	want := `{"Version":"2012-10-17","Statement":[` +
		`{"Sid":"ObjectsInPrefix","Effect":"Allow","Action":["s3:AbortMultipartUpload","s3:DeleteObject","s3:GetObject","s3:PutObject"],"Resource":["arn:aws:s3:::orgforge-tenants/orgs/acme/*"]},` +
		`{"Sid":"ListPrefix","Effect":"Allow","Action":["s3:ListBucket"],"Resource":["arn:aws:s3:::orgforge-tenants"],"Condition":{"StringLike":{"s3:prefix":["orgs/acme/","orgs/acme/*"]}}},` +
		`{"Sid":"KeepMarker","Effect":"Deny","Action":["s3:DeleteObject","s3:PutObject"],"Resource":["arn:aws:s3:::orgforge-tenants/orgs/acme/.orgforge"]}]}`
	if doc != want {
		t.Errorf("PolicyDocument =\n%s\nwant\n%s", doc, want)
	}
}

// invalidPrefixes are prefixes every call of the service refuses before it
// sends anything: each could widen an organization's grant in a policy, or
// lead outside its folder.
var invalidPrefixes = []string{
	"", "orgs/acme", "/orgs/acme/", // not a relative folder ending in "/"
	"orgs/*/", "orgs/ac?e/", "orgs/${aws:userid}/", "orgs/${aws:username}/", // wildcards, policy variables
	"orgs/../", "orgs//", // a parent, an empty segment
	"orgs/a\n/", "orgs/\x00/", "orgs/a\x00/", `orgs/a"/`, "orgs/é/", // control characters, a quote, non-ASCII
	strings.Repeat("a/", 300), // longer than a policy may name
}

// invalidBuckets are names S3 does not allow for a bucket.
var invalidBuckets = []string{"", "ten*", "tenants/orgs", "Tenants", "ab", "192.168.1.1", "ten..ants", "ten:ants"}

func TestPolicyDocumentRefusesWhatCouldWidenTheGrant(t *testing.T) {
	type args struct{ bucket, prefix string }
	var cases []args
	for _, p := range invalidPrefixes {
		cases = append(cases, args{"tenants", p})
	}
	for _, b := range invalidBuckets {
		cases = append(cases, args{b, "orgs/acme/"})
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%.24q in %q", tc.prefix, tc.bucket), func(t *testing.T) {
			doc, err := PolicyDocument(tc.bucket, tc.prefix)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("PolicyDocument(%q, %q) = %s, %v; want ErrInvalid", tc.bucket, tc.prefix, doc, err)
			}
		})
	}
}

func TestSamePolicyIgnoresFormNotMeaning(t *testing.T) {
	want, err := buildPolicy("tenants", "orgs/acme/")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		doc  string
		same bool
	}{
		"as written": {mustPolicy(t, "tenants", "orgs/acme/"), true},
		"reordered, single strings, spaced": {`{
			"Statement": [
				{"Effect": "Deny", "Sid": "KeepMarker", "Resource": "arn:aws:s3:::tenants/orgs/acme/.orgforge", "Action": ["s3:PutObject", "s3:DeleteObject"]},
				{"Sid": "ListPrefix", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::tenants",
				 "Condition": {"StringLike": {"s3:prefix": ["orgs/acme/*", "orgs/acme/"]}}},
				{"Sid": "ObjectsInPrefix", "Effect": "Allow", "Resource": "arn:aws:s3:::tenants/orgs/acme/*",
				 "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]}
			],
			"Version": "2012-10-17"}`, true},
		"another prefix":            {mustPolicy(t, "tenants", "orgs/other/"), false},
		"another bucket":            {mustPolicy(t, "tenants2", "orgs/acme/"), false},
		"an element we never write": {strings.Replace(mustPolicy(t, "tenants", "orgs/acme/"), `"Effect":"Allow"`, `"Effect":"Allow","NotResource":"*"`, 1), false},
		"not JSON":                  {"%7B", false},
		"two documents":             {mustPolicy(t, "tenants", "orgs/acme/") + "{}", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := samePolicy(tc.doc, want); got != tc.same {
				t.Errorf("samePolicy = %v, want %v", got, tc.same)
			}
		})
	}
}

func mustPolicy(t *testing.T, bucket, prefix string) string {
	t.Helper()
	doc, err := PolicyDocument(bucket, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func FuzzPolicyDocument(f *testing.F) {
	for _, seed := range [][2]string{
		{"orgforge-tenants", "orgs/acme/"},
		{"orgforge-tenants", "orgs/a-b.c_d/"},
		{"my.bucket", "tenants/x/y/"},
		{"orgforge-tenants", "orgs/*/"},
		{"orgforge-tenants", "orgs/../"},
		{"orgforge-tenants", "/orgs/"},
		{"orgforge-tenants", "orgs/${aws:username}/"},
		{"orgforge-tenants", "orgs/\x00/"},
		{"orgforge-tenants", `orgs/"},{"Effect":"Allow","Action":"*","Resource":"*"}/`},
		{"tenants\",\"Resource\":\"*", "orgs/acme/"},
		{"", ""},
		{"a", "/"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, bucket, prefix string) {
		doc, err := PolicyDocument(bucket, prefix)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("PolicyDocument(%q, %q): err = %v, want ErrInvalid", bucket, prefix, err)
			}
			return
		}
		var got policyDocument
		if err := jsonStrict(doc, &got); err != nil {
			t.Fatalf("PolicyDocument(%q, %q) is not a policy: %v\n%s", bucket, prefix, err, doc)
		}
		bucketARN := "arn:aws:s3:::" + bucket
		for _, st := range got.Statement {
			for _, a := range st.Action {
				if !strings.HasPrefix(a, "s3:") || strings.Contains(a, "*") {
					t.Errorf("action %q is not one named s3 action", a)
				}
			}
			for _, r := range st.Resource {
				switch {
				case r == bucketARN:
					// The bucket itself: only listing, only under the prefix.
					if st.Effect == "Allow" && (len(st.Action) != 1 || st.Action[0] != "s3:ListBucket") {
						t.Errorf("bucket resource granted %q", st.Action)
					}
					values := st.Condition["StringLike"]["s3:prefix"]
					if st.Effect == "Allow" && len(values) == 0 {
						t.Errorf("listing granted without an s3:prefix condition: %s", doc)
					}
					for _, v := range values {
						if !strings.HasPrefix(v, prefix) || strings.Count(v, "*") > 1 || strings.Contains(v, "?") {
							t.Errorf("s3:prefix value %q is not under %q", v, prefix)
						}
					}
				case !strings.HasPrefix(r, bucketARN+"/"+prefix):
					t.Errorf("resource %q is not under %q", r, bucketARN+"/"+prefix)
				case strings.Contains(strings.TrimSuffix(r, "*"), "*"), strings.Contains(r, "?"):
					t.Errorf("resource %q has a wildcard inside", r)
				}
			}
		}
	})
}
