package controllers

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/orgforge/orgforge/internal/credentials"
)

// A pair once verified is answered from memory; every other pair,
// including an edit of either half of one remembered, is answered as
// credentials.VerifyPassword answers it.
func TestPasswordChecksAnswerAsTheVerifierDoesAfterAnyEdit(t *testing.T) {
	verifier, err := credentials.SCRAMVerifier("first-password")
	if err != nil {
		t.Fatal(err)
	}
	other, err := credentials.SCRAMVerifier("second-password")
	if err != nil {
		t.Fatal(err)
	}
	var p passwordChecks
	const org, another = types.UID("org-1"), types.UID("org-2")
	steps := []struct {
		name               string
		uid                types.UID
		verifier, password string
		want               bool
		wantErr            bool
	}{
		{name: "the Secret as written", uid: org, verifier: verifier, password: "first-password", want: true},
		{name: "the same again", uid: org, verifier: verifier, password: "first-password", want: true},
		{name: "the password edited", uid: org, verifier: verifier, password: "edited-password", want: false},
		{name: "the password edited by one character", uid: org, verifier: verifier, password: "first-passworD", want: false},
		{name: "the verifier edited", uid: org, verifier: other, password: "first-password", want: false},
		{name: "the verifier not one", uid: org, verifier: "not a verifier", password: "first-password", wantErr: true},
		{name: "the pair back as written", uid: org, verifier: verifier, password: "first-password", want: true},
		{name: "another organization's pair", uid: another, verifier: other, password: "second-password", want: true},
		{name: "the first organization's password under the second's verifier", uid: org, verifier: other, password: "first-password", want: false},
		{name: "the second organization's pair edited", uid: another, verifier: other, password: "first-password", want: false},
	}
	for _, s := range steps {
		got, err := p.matches(s.uid, s.verifier, s.password)
		if (err != nil) != s.wantErr || got != s.want {
			t.Fatalf("%s: got %v, %v; want %v, error %v", s.name, got, err, s.want, s.wantErr)
		}
	}
	p.forget(org)
	if got, err := p.matches(org, verifier, "first-password"); err != nil || !got {
		t.Fatalf("after forget: got %v, %v; want a match", got, err)
	}
}

// No two pairs share a digest by running together: the verifier's length
// goes first.
func TestPairDigestTellsWhereTheVerifierEnds(t *testing.T) {
	if pairDigest("ab", "c") == pairDigest("a", "bc") {
		t.Fatal("pairs that run together into the same bytes share a digest")
	}
}
