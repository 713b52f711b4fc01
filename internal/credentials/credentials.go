// Package credentials makes the secrets orgforge hands out: random passwords,
// and the SCRAM-SHA-256 verifiers that PostgreSQL stores in place of them, so
// that no cleartext password is ever sent in SQL.
package credentials

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const (
	// PasswordLength is the length of generated passwords: 32 characters from
	// a 62-letter alphabet, about 190 bits.
	PasswordLength = 32
	// SCRAMIterations matches PostgreSQL's default scram_iterations.
	SCRAMIterations = 4096
	saltLength      = 16
	alphabet        = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// ErrUnsupportedPassword is returned for passwords that PostgreSQL would
// normalise with SASLprep before hashing; orgforge only hashes ASCII.
var ErrUnsupportedPassword = errors.New("password must be printable ASCII")

// Service is the registry's credentials service, the seed's AuthService.
// It holds no state and reaches nothing outside the process.
type Service struct{}

// NewService returns the credentials service.
func NewService() *Service { return &Service{} }

// Name is the service's name in the registry, logs and readyz.
func (*Service) Name() string { return "credentials" }

// HealthCheck proves the system's random source works.
func (*Service) HealthCheck(context.Context) error {
	_, err := NewPassword()
	return err
}

// NewPassword returns a new random password.
func (*Service) NewPassword() (string, error) { return NewPassword() }

// Verifier returns the SCRAM-SHA-256 verifier of password.
func (*Service) Verifier(password string) (string, error) { return SCRAMVerifier(password) }

// NewPassword returns a random password drawn from crypto/rand. Letters and
// digits only, so it needs no quoting in a URI, a JDBC URL or a shell.
func NewPassword() (string, error) {
	b := make([]byte, PasswordLength)
	// Rejection sampling keeps every letter equally likely.
	buf := make([]byte, 1)
	for i := 0; i < len(b); {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("reading random bytes: %w", err)
		}
		if int(buf[0]) >= 256-256%len(alphabet) {
			continue
		}
		b[i] = alphabet[int(buf[0])%len(alphabet)]
		i++
	}
	return string(b), nil
}

// SCRAMVerifier returns the verifier PostgreSQL stores for password under
// password_encryption=scram-sha-256 (RFC 5802 and 7677), with a new salt:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
func SCRAMVerifier(password string) (string, error) {
	salt := make([]byte, saltLength)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("reading salt: %w", err)
	}
	return scramVerifier(password, salt, SCRAMIterations)
}

func scramVerifier(password string, salt []byte, iterations int) (string, error) {
	for i := 0; i < len(password); i++ {
		if password[i] < 0x20 || password[i] > 0x7e {
			return "", ErrUnsupportedPassword
		}
	}
	storedKey, serverKey, err := scramKeys(password, salt, iterations)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations,
		enc.EncodeToString(salt), enc.EncodeToString(storedKey), enc.EncodeToString(serverKey)), nil
}

func scramKeys(password string, salt []byte, iterations int) (storedKey, serverKey []byte, err error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, nil, fmt.Errorf("deriving key: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	sum := sha256.Sum256(clientKey)
	return sum[:], hmacSHA256(salted, "Server Key"), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// VerifyPassword reports whether password matches a SCRAM-SHA-256 verifier.
// The operator uses it to tell whether the password in a Secret is still the
// one the role has, without logging in.
func VerifyPassword(verifier, password string) (bool, error) {
	iterations, salt, storedKey, serverKey, err := parseVerifier(verifier)
	if err != nil {
		return false, err
	}
	for i := 0; i < len(password); i++ {
		if password[i] < 0x20 || password[i] > 0x7e {
			return false, nil
		}
	}
	gotStored, gotServer, err := scramKeys(password, salt, iterations)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(gotStored, storedKey) == 1 &&
		subtle.ConstantTimeCompare(gotServer, serverKey) == 1, nil
}

// parseVerifier splits a verifier into its parts, rejecting anything that is
// not exactly PostgreSQL's format.
func parseVerifier(v string) (iterations int, salt, storedKey, serverKey []byte, err error) {
	bad := func(why string) error { return fmt.Errorf("not a SCRAM-SHA-256 verifier: %s", why) }
	rest, ok := strings.CutPrefix(v, "SCRAM-SHA-256$")
	if !ok {
		return 0, nil, nil, nil, bad("missing SCRAM-SHA-256$ prefix")
	}
	params, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return 0, nil, nil, nil, bad("missing keys")
	}
	iterStr, saltStr, ok := strings.Cut(params, ":")
	if !ok {
		return 0, nil, nil, nil, bad("missing salt")
	}
	iterations, err = strconv.Atoi(iterStr)
	if err != nil || iterations < 1 || iterations > 1<<24 {
		return 0, nil, nil, nil, bad("bad iteration count")
	}
	storedStr, serverStr, ok := strings.Cut(keys, ":")
	if !ok {
		return 0, nil, nil, nil, bad("missing server key")
	}
	enc := base64.StdEncoding
	if salt, err = enc.DecodeString(saltStr); err != nil || len(salt) == 0 {
		return 0, nil, nil, nil, bad("bad salt")
	}
	if storedKey, err = enc.DecodeString(storedStr); err != nil || len(storedKey) != sha256.Size {
		return 0, nil, nil, nil, bad("bad stored key")
	}
	if serverKey, err = enc.DecodeString(serverStr); err != nil || len(serverKey) != sha256.Size {
		return 0, nil, nil, nil, bad("bad server key")
	}
	return iterations, salt, storedKey, serverKey, nil
}
