package controllers

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/orgforge/orgforge/internal/credentials"
)

// passwordChecks remembers, by Organization UID, the last database Secret
// password this process found to match the Secret's verifier annotation,
// as a digest of the two. A SCRAM verification derives the key over the
// verifier's iterations (4096, PostgreSQL's default), about a millisecond
// of CPU and most of what a settled organization's check costs the
// operator; its answer for the same verifier and password never changes.
// A Secret whose password or verifier is edited is a new pair, and is
// verified again.
type passwordChecks struct{ last sync.Map }

// matches reports whether password matches verifier, as
// credentials.VerifyPassword does.
func (p *passwordChecks) matches(uid types.UID, verifier, password string) (bool, error) {
	key := pairDigest(verifier, password)
	if v, ok := p.last.Load(uid); ok && v.([sha256.Size]byte) == key {
		return true, nil
	}
	same, err := credentials.VerifyPassword(verifier, password)
	if err == nil && same {
		p.last.Store(uid, key)
	}
	return same, err
}

// forget drops what is remembered of an Organization that is gone.
func (p *passwordChecks) forget(uid types.UID) { p.last.Delete(uid) }

// pairDigest is a digest of verifier and password, the verifier's length
// first so that no two pairs run together into the same bytes.
func pairDigest(verifier, password string) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(verifier)))
	h.Write(n[:])
	h.Write([]byte(verifier))
	h.Write([]byte(password))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
