package storage

import (
	"context"
	"errors"
	"fmt"
)

// AccessRequest is the access an organization should have: its IAM user
// confined to Prefix with one working key, or, with None, no user at all.
type AccessRequest struct {
	Org    string
	Marker Marker
	Prefix string
	// None is storage.access None: the organization's user and its keys go.
	None bool
	// Current is the key the organization's Secret holds; zero when it
	// holds none.
	Current AccessKey
}

// Access is an organization's access once EnsureAccess has returned.
type Access struct {
	// User is the organization's IAM user (UserName).
	User string
	// Key is the key the organization's Secret must hold: Current while it
	// is usable, a new one otherwise. Zero with None.
	Key AccessKey
	// Changes says what EnsureAccess changed, a sentence each, in the
	// order it changed them; empty when nothing changed.
	Changes []string
}

func (a *Access) note(format string, args ...any) {
	a.Changes = append(a.Changes, fmt.Sprintf(format, args...))
}

// EnsureAccess makes an organization's access what req asks, observing
// before it acts, and returns the key its Secret must hold and what changed.
//
// The key lifecycle lives here so that no caller sequences key calls:
//   - The current key stays while it is usable (AccessKeyUsable): it works,
//     or IAM created it less than the propagation allowance ago. Any other
//     key of the user is deleted, such as one issued before a crash that
//     never reached the Secret.
//   - Otherwise every key of the user is deleted, which makes room under
//     IAM's two keys a user, and one new key is issued.
//
// Only a key that EnsureAccess returns may be written to the Secret, and
// the key in req.Current is not deleted while it is usable, so a crash at
// any point leaves at most one key that the next call removes. Current must
// be what the Secret holds: a caller that reads it from a cache that lags
// could have a newer key deleted. Stale keys go before the caller writes
// the Secret, not after; since a new key is only issued after every key of
// the user is deleted, the Secret's write has nothing left to protect.
//
// With None the user and its keys are deleted; a user of that name that is
// not the organization's is left alone, since there is nothing of the
// organization to revoke.
func (s *Service) EnsureAccess(ctx context.Context, req AccessRequest) (Access, error) {
	a := Access{User: UserName(req.Org)}
	if req.None {
		return a, s.revokeAccess(ctx, &a, req.Marker)
	}
	_, change, err := s.EnsurePrefixUser(ctx, req.Org, req.Marker, req.Prefix)
	if err != nil {
		return a, err
	}
	a.noteUserChange(change, req.Prefix)
	cur := req.Current
	if change != UserCreated && cur.ID != "" && cur.Secret != "" {
		usable, err := s.AccessKeyUsable(ctx, a.User, cur.ID, cur.Secret, req.Prefix)
		if err != nil {
			return a, err
		}
		if usable {
			a.Key = cur
			return a, s.deleteStaleKeys(ctx, &a)
		}
	}
	// A user created a moment ago holds no key to clear.
	if change != UserCreated {
		if _, err := s.DeleteAccessKeys(ctx, a.User); err != nil {
			return a, err
		}
	}
	if a.Key, err = s.CreateAccessKey(ctx, a.User); err != nil {
		return a, err
	}
	verb := "issued"
	if cur.ID != "" {
		verb = "rotated to"
	}
	a.note("%s access key %s for prefix %s", verb, a.Key.ID, req.Prefix)
	return a, nil
}

func (a *Access) noteUserChange(change UserChange, prefix string) {
	switch change {
	case UserCreated:
		a.note("created IAM user %s with access to prefix %s only", a.User, prefix)
	case PolicyUpdated:
		a.note("set IAM user %s's policy to prefix %s", a.User, prefix)
	case BoundaryUpdated:
		a.note("set IAM user %s's permissions boundary", a.User)
	}
}

// deleteStaleKeys deletes every key of a.User but a.Key.
func (s *Service) deleteStaleKeys(ctx context.Context, a *Access) error {
	keys, err := s.ListAccessKeys(ctx, a.User)
	if err != nil {
		return fmt.Errorf("listing access keys of %s: %w", a.User, err)
	}
	if len(keys) <= 1 {
		return nil
	}
	n, err := s.DeleteAccessKeys(ctx, a.User, a.Key.ID)
	if err != nil {
		return fmt.Errorf("deleting stale access keys of %s: %w", a.User, err)
	}
	if n > 0 {
		a.note("deleted %d stale access keys of %s", n, a.User)
	}
	return nil
}

// revokeAccess deletes the organization's user and its keys.
func (s *Service) revokeAccess(ctx context.Context, a *Access, m Marker) error {
	deleted, err := s.DeleteOwnedPrefixUser(ctx, a.User, m)
	if errors.Is(err, ErrConflict) {
		return nil
	}
	if deleted {
		a.note("deleted IAM user %s and its keys: storage.access is None", a.User)
	}
	return err
}
