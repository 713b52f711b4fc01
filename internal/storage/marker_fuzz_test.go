package storage

import (
	"encoding/json"
	"testing"
)

// FuzzCheckMarker feeds the prefix marker reader any object body: it never
// panics, and it lets an organization claim a prefix only when the marker
// names that organization's UID.
func FuzzCheckMarker(f *testing.F) {
	mine := Marker{Org: "acme", UID: "0b6c-uid"}
	good, _ := json.Marshal(mine)
	for _, s := range []string{string(good), `{"org":"acme","uid":""}`, `{"uid":"0b6c-uid","uid":"other"}`,
		`{"UID":"0b6c-uid"}`, `null`, `[]`, `{"org":"evil","uid":"0b6c-uid","extra":1}`, "payroll's own marker", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var s *Service
		_, err := s.checkMarker("orgs/acme/", []byte(body), mine)
		var got Marker
		decoded := json.Unmarshal([]byte(body), &got) == nil
		if err == nil && (!decoded || got.UID != mine.UID) {
			t.Fatalf("checkMarker accepted %q as acme's marker", body)
		}
		if err != nil && decoded && got.UID == mine.UID {
			t.Fatalf("checkMarker refused acme's own marker %q: %v", body, err)
		}
	})
}

// FuzzSamePolicy feeds the policy comparison any document IAM could return:
// it never panics, and it calls a document the same as orgforge's only when
// it grants exactly what orgforge's does.
func FuzzSamePolicy(f *testing.F) {
	want, err := buildPolicy("orgforge-tenants", "orgs/acme/")
	if err != nil {
		f.Fatal(err)
	}
	doc, _ := encodePolicy(want)
	indented, _ := json.MarshalIndent(want, "", "  ")
	for _, s := range []string{doc, string(indented), `{"Version":"2012-10-17","Statement":[]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`, "", "{", doc + doc} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, current string) {
		if !samePolicy(current, want) {
			return
		}
		var got policyDocument
		if err := jsonStrict(current, &got); err != nil {
			t.Fatalf("samePolicy accepted a document it cannot read: %q", current)
		}
		a, _ := json.Marshal(normalizePolicy(got))
		b, _ := json.Marshal(normalizePolicy(want))
		if string(a) != string(b) {
			t.Fatalf("samePolicy called %q the same as orgforge's policy", current)
		}
	})
}
