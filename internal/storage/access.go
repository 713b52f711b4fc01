package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
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
	// Previous is the key a rotation switched from, which the Secret keeps
	// during its grace period; zero otherwise, and then it is deleted.
	Previous AccessKey
	// Pending is a rotation's new key, which the Secret keeps until S3
	// honours it; zero when none was issued.
	Pending AccessKey
	// Rotate asks for a rotation: a new key, which becomes Key once S3
	// honours it, Current then becoming Previous. Without it a pending key
	// is deleted.
	Rotate bool
	// AtRest says the organization is Ready and its spec unchanged since:
	// with one key and no rotation, its access is then checked in full
	// only when its check is due (Config.CheckPeriod), and otherwise by
	// the shared listing of users alone.
	AtRest bool
}

// Access is an organization's access once EnsureAccess has returned.
type Access struct {
	// User is the organization's IAM user (UserName).
	User string
	// Key is the key the organization's Secret must hold: Current while it
	// is usable, a new one otherwise, or a rotation's new key once it
	// works. Zero with None.
	Key AccessKey
	// Previous is the key the Secret keeps as its previous one: the
	// request's while it is kept, or Current when a rotation switched.
	Previous AccessKey
	// Pending is the rotation's new key that S3 does not honour yet, which
	// the Secret must keep until it does.
	Pending AccessKey
	// Switched is set when a rotation's key became Key.
	Switched bool
	// Changes says what EnsureAccess changed, a sentence each, in the
	// order it changed them; empty when nothing changed.
	Changes []string
}

func (a *Access) note(format string, args ...any) {
	a.Changes = append(a.Changes, fmt.Sprintf(format, args...))
}

// EnsureAccess makes an organization's access what req asks, observing
// before it acts, and returns the keys its Secret must hold and what
// changed.
//
// The key lifecycle lives here so that no caller sequences key calls:
//   - The current key stays while it is usable (AccessKeyUsable): it works,
//     or IAM created it less than the propagation allowance ago. Every
//     other key of the user is deleted but the request's previous and
//     pending keys, such as one issued before a crash that never reached
//     the Secret, or a previous key whose grace period is over.
//   - Otherwise every key of the user is deleted, which makes room under
//     IAM's two keys a user, and one new key is issued.
//   - A rotation (req.Rotate) issues a second key, once no previous key is
//     kept, and returns it as Pending until S3 honours it, then as Key with
//     Current as Previous. A pending key that S3 still refuses after the
//     propagation allowance is deleted and issued again.
//
// Only a key that EnsureAccess returns may be written to the Secret, and no
// key in req is deleted while it is usable and asked for, so a crash at any
// point leaves at most one key that the next call removes, and the user
// never holds more than two. The keys in req must be what the Secret holds:
// a caller that reads it from a cache that lags could have a newer key
// deleted. Stale keys go before the caller writes the Secret, not after.
//
// With None the user and its keys are deleted; a user of that name that is
// not the organization's is left alone, since there is nothing of the
// organization to revoke.
//
// With AtRest, an organization with one key whose access check is not due
// (Config.CheckPeriod) is checked by the shared listing of users alone, and
// a None organization whose user the listing lacks costs no call (see
// atrest.go).
func (s *Service) EnsureAccess(ctx context.Context, req AccessRequest) (Access, error) {
	a := Access{User: UserName(req.Org)}
	if req.None {
		s.rest.forget(accessCheck(req.Org))
		if req.AtRest {
			// Nothing to revoke unless the shared listing has the user.
			if _, found, err := s.listedUser(ctx, a.User); err != nil || !found {
				return a, err
			}
		}
		return a, s.revokeAccess(ctx, &a, req.Marker)
	}
	if resting, ok, err := s.restingAccess(ctx, req); ok || err != nil {
		return resting, err
	}
	start := s.now()
	_, change, err := s.EnsurePrefixUser(ctx, req.Org, req.Marker, req.Prefix)
	if err != nil {
		return a, err
	}
	a.noteUserChange(change, req.Prefix)
	cur := req.Current
	if change != UserCreated && cur.ID != "" && cur.Secret != "" {
		listed, works, err := s.honouredKeyListed(ctx, a.User, req)
		usable := works
		if err == nil && !works {
			listed = nil
			usable, works, err = s.keyUsable(ctx, a.User, cur.ID, cur.Secret, req.Prefix)
		}
		if err != nil {
			return a, err
		}
		if usable {
			a.Key = cur
			if err := s.keepAndRotate(ctx, &a, req, listed); err != nil {
				return a, err
			}
			// As wanted now, repaired or not, and the key honoured by S3
			// rather than trusted for its youth: the check may rest until
			// it is due again.
			if works && oneKey(req) {
				s.rest.done(accessCheck(req.Org), accessState(req), start, true)
			}
			return a, nil
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

// honouredKeyListed answers whether the Secret's key of an organization at
// rest works from IAM's list of the user's keys alone, when S3 honoured
// that very key (id and secret) earlier in this process: a key S3 honoured
// keeps working while IAM lists it as Active and the user's policy and
// boundary, which the same check reads, stay as wanted. So the request
// signed with the tenant's key is made once per key and process, not at
// every check. works is false when that does not apply or the list does
// not show the key Active; the caller then asks S3. listed is the user's
// key ids, for keepAndRotate.
func (s *Service) honouredKeyListed(ctx context.Context, user string, req AccessRequest) (listed []string, works bool, err error) {
	if !req.AtRest || !oneKey(req) || !s.rest.honoured(accessCheck(req.Org), accessState(req)) {
		return nil, false, nil
	}
	keys, err := s.AccessKeys(ctx, user)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for _, k := range keys {
		listed = append(listed, k.ID)
		works = works || (k.ID == req.Current.ID && k.Active)
	}
	return listed, works, nil
}

// keepAndRotate deletes every key of a.User but a.Key and the request's
// previous and pending keys, then carries a rotation one step on. listed
// is the user's key ids when the caller has just listed them, else nil.
func (s *Service) keepAndRotate(ctx context.Context, a *Access, req AccessRequest, listed []string) error {
	if req.Previous.ID != "" && req.Previous.ID != a.Key.ID {
		a.Previous = req.Previous
	}
	if req.Rotate && a.Previous.ID == "" && req.Pending.ID != "" && req.Pending.ID != a.Key.ID {
		a.Pending = req.Pending
	}
	if err := s.deleteStaleKeys(ctx, a, req, listed); err != nil {
		return err
	}
	if !req.Rotate || a.Previous.ID != "" {
		return nil
	}
	if a.Pending.ID == "" {
		key, err := s.CreateAccessKey(ctx, a.User)
		if err != nil {
			return err
		}
		a.Pending = key
		a.note("issued access key %s to rotate to", key.ID)
	}
	works, err := s.AccessKeyWorks(ctx, a.Pending.ID, a.Pending.Secret, req.Prefix)
	if err != nil {
		return err
	}
	if works {
		a.Previous, a.Key, a.Pending, a.Switched = a.Key, a.Pending, AccessKey{}, true
		return nil
	}
	young, err := s.keyYoung(ctx, a.User, a.Pending.ID)
	if err != nil || young {
		return err
	}
	// S3 still refuses it after the allowance: it is broken, or was
	// deleted by hand. The next call issues another.
	if _, err := s.DeleteAccessKeys(ctx, a.User, a.Key.ID); err != nil {
		return err
	}
	a.note("deleted access key %s, which S3 refused for longer than the propagation allowance", a.Pending.ID)
	a.Pending = AccessKey{}
	return nil
}

// keyYoung reports whether IAM lists key id of user as created less than
// the propagation allowance ago.
func (s *Service) keyYoung(ctx context.Context, user, id string) (bool, error) {
	keys, err := s.AccessKeys(ctx, user)
	if err != nil {
		return false, err
	}
	for _, k := range keys {
		if k.ID == id && (k.Created.IsZero() || time.Since(k.Created) < s.cfg.KeyPropagation) {
			return true, nil
		}
	}
	return false, nil
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

// deleteStaleKeys deletes every key of a.User but a.Key, a.Previous and
// a.Pending, listing them unless listed has them already. A previous or
// pending key of req that is not kept is noted as such.
func (s *Service) deleteStaleKeys(ctx context.Context, a *Access, req AccessRequest, listed []string) error {
	keep := []string{a.Key.ID}
	for _, k := range []AccessKey{a.Previous, a.Pending} {
		if k.ID != "" {
			keep = append(keep, k.ID)
		}
	}
	keys := listed
	if keys == nil {
		var err error
		if keys, err = s.ListAccessKeys(ctx, a.User); err != nil {
			return fmt.Errorf("listing access keys of %s: %w", a.User, err)
		}
	}
	if len(keys) <= len(keep) {
		return nil
	}
	n, err := s.DeleteAccessKeys(ctx, a.User, keep...)
	if err != nil {
		return fmt.Errorf("deleting stale access keys of %s: %w", a.User, err)
	}
	for _, k := range []AccessKey{req.Previous, req.Pending} {
		if k.ID != "" && slices.Contains(keys, k.ID) && !slices.Contains(keep, k.ID) {
			a.note("deleted access key %s", k.ID)
			n--
		}
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
