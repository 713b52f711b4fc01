package credentials

import (
	"strings"
	"testing"
)

// FuzzVerifyPassword feeds the verifier parser anything: it never panics,
// accepts only PostgreSQL's format, and a verifier it made matches its own
// password and no other.
func FuzzVerifyPassword(f *testing.F) {
	good, err := scramVerifier("correct horse", []byte("0123456789abcdef"), 4096)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		good,
		"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy",
		"SCRAM-SHA-256$0:c2FsdA==$AAAA:AAAA",
		"SCRAM-SHA-256$99999999999999999999:c2FsdA==$AAAA:AAAA",
		"SCRAM-SHA-256$-1:$:",
		"md5d41d8cd98f00b204e9800998ecf8427e",
		"SCRAM-SHA-256$4096:c2Fs\ndA==$" + strings.Repeat("A", 43) + "=:" + strings.Repeat("A", 43) + "=",
		"",
	} {
		f.Add(s, "correct horse")
	}
	f.Fuzz(func(t *testing.T, verifier, password string) {
		iterations, salt, stored, server, err := parseVerifier(verifier)
		if err != nil {
			if ok, verr := VerifyPassword(verifier, password); ok || verr == nil {
				t.Fatalf("VerifyPassword accepted a verifier parseVerifier refuses: %q", verifier)
			}
			return
		}
		if !strings.HasPrefix(verifier, "SCRAM-SHA-256$") || iterations < 1 || len(salt) == 0 || len(stored) != 32 || len(server) != 32 {
			t.Fatalf("parseVerifier accepted %q as %d iterations, %d-byte salt", verifier, iterations, len(salt))
		}
		if iterations > 8192 {
			return // valid, but too slow to hash in a fuzz loop
		}
		if _, err := VerifyPassword(verifier, password); err != nil {
			t.Fatalf("VerifyPassword(%q): %v", verifier, err)
		}
		// A verifier made from the parsed salt and iterations matches the
		// password it was made from, and only that one.
		printable := strings.Map(func(r rune) rune {
			if r < 0x20 || r > 0x7e {
				return -1
			}
			return r
		}, password)
		mine, err := scramVerifier(printable, salt, iterations)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := VerifyPassword(mine, printable); !ok || err != nil {
			t.Fatalf("a verifier of %q does not match it: %v", printable, err)
		}
		if ok, _ := VerifyPassword(mine, printable+"x"); ok {
			t.Fatalf("a verifier of %q matches %q", printable, printable+"x")
		}
	})
}
