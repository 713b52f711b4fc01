package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
)

// An organization at rest is checked in two ways. Its user's presence is
// read from one listing of the users under the IAM path, shared by every
// organization and renewed at most every UserListMaxAge: a page of up to a
// thousand users stands for as many GetUser calls. What IAM and S3 cannot
// answer in bulk (the prefix's marker, the user's inline policy, boundary
// and tags, its access keys, and the S3 request signed with the
// organization's key) is checked once per CheckPeriod, at a phase of the
// period fixed by the organization's UID, so that each pass checks a share
// of the organizations rather than all of them at once.

// userListPage is the most users IAM returns in one ListUsers page.
const userListPage = 1000

// userList is a listing of the users under the IAM path, by name.
type userList struct {
	// mu is held while the listing is renewed, so that concurrent
	// reconciles wait for one listing rather than each making their own.
	mu    sync.Mutex
	at    time.Time
	users map[string]userEntry
	// failed is when the last renewal failed: none is tried again for a
	// max age, and the listing before it serves meanwhile while it is
	// younger than a resync period.
	failed time.Time
}

// userEntry is what the listing tells of a user: its path, and its UID
// tag when the listing has tags (AWS's has none, versitygw's has).
type userEntry struct {
	path, uid string
	tagged    bool
}

// listedUser reports whether user is in a listing of the users under the
// IAM path no older than UserListMaxAge, and what it tells of it.
func (s *Service) listedUser(ctx context.Context, user string) (userEntry, bool, error) {
	l := &s.users
	l.mu.Lock()
	defer l.mu.Unlock()
	if (l.users == nil || s.now().Sub(l.at) >= s.cfg.UserListMaxAge) && s.now().Sub(l.failed) >= s.cfg.UserListMaxAge {
		start := s.now()
		users := map[string]userEntry{}
		pages := iam.NewListUsersPaginator(s.iam, &iam.ListUsersInput{
			PathPrefix: aws.String(s.cfg.IAMPath), MaxItems: aws.Int32(userListPage),
		})
		err := paginate(ctx, s, "ListUsers", pages, func(page *iam.ListUsersOutput) bool {
			for i := range page.Users {
				u := &page.Users[i]
				users[aws.ToString(u.UserName)] = userEntry{path: aws.ToString(u.Path), uid: userMarker(u).UID, tagged: len(u.Tags) > 0}
			}
			return true
		})
		if err != nil {
			l.failed = s.now()
			s.log.Info("Listing IAM users failed; the listing before it serves while it is younger than the resync period",
				"path", s.cfg.IAMPath, "error", err.Error())
		} else {
			// Aged from when the listing began: a user deleted while the
			// pages were read may still be in it.
			l.users, l.at = users, start
		}
	}
	if l.users == nil || s.now().Sub(l.at) >= max(s.cfg.UserListMaxAge, s.cfg.Resync) {
		return userEntry{}, false, fmt.Errorf("%w: no listing of the IAM users under %s younger than the resync period", errNoUserList, s.cfg.IAMPath)
	}
	u, ok := l.users[user]
	return u, ok, nil
}

// errNoUserList is the shared listing's error: the organizations at rest
// are then checked in full, each with its own calls, as before it.
var errNoUserList = errors.New("the shared listing of IAM users is unavailable")

// cadence decides when the per-organization checks of an organization at
// rest fall due.
type cadence struct {
	period, resync time.Duration
	// since is when the process began to check: a check it has not made
	// yet rests only if it fell due a resync period or more before that.
	since time.Time
	mu    sync.Mutex
	// checked is, by check, the state last found as wanted and when.
	checked map[string]checkRecord
}

type checkRecord struct {
	state checkState
	at    time.Time
	// honoured is set when S3 honoured the access key of state, which an
	// access check found then (see honouredKeyListed).
	honoured bool
}

// checkState is a digest of what a check found, small whatever it hashes.
type checkState [sha256.Size]byte

// lastDue is the latest instant at or before now at which the checks of
// the organization uid fell due: they do once a period, at a phase of it
// that the UID fixes.
func (c *cadence) lastDue(uid string, now time.Time) time.Time {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	offset := int64(h.Sum64() % uint64(c.period))
	t := now.UnixNano() + offset
	return time.Unix(0, t-t%int64(c.period)-offset)
}

// rests reports whether check, whose subject is now in state, may be left
// out now: it was found in that state at or after the organization's last
// due instant. A check this process has not made yet rests unless it fell
// due within the last resync period, which the process before it would
// have covered; it is then taken as made now, so that a due instant missed
// by a pass late by more than the resync period is still caught by the
// next pass.
func (c *cadence) rests(check, uid string, state checkState, now time.Time) bool {
	if c.period <= 0 {
		return false
	}
	due := c.lastDue(uid, now)
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.checked[check]
	switch {
	case !ok:
		// Due since a resync period before this process began to check:
		// the process before it may not have made it.
		if due.After(minTime(now, c.since).Add(-c.resync)) {
			return false
		}
		c.checked[check] = checkRecord{state: state, at: now}
		return true
	case rec.state != state:
		return false
	}
	return !rec.at.Before(due)
}

// done records that check found its subject in state, its key honoured
// by S3 or not.
func (c *cadence) done(check string, state checkState, now time.Time, honoured bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked[check] = checkRecord{state: state, at: now, honoured: honoured}
}

// honoured reports whether check found its subject in state with its key
// honoured by S3, in this process.
func (c *cadence) honoured(check string, state checkState) bool {
	if c.period <= 0 {
		// Everything checked at every call, as before.
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	rec, ok := c.checked[check]
	return ok && rec.honoured && rec.state == state
}

// forget drops what check found, so that the next call makes it.
func (c *cadence) forget(check string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.checked, check)
}

func markerCheck(prefix string) string { return "marker " + prefix }
func accessCheck(org string) string    { return "access " + org }

// markerState is what a marker check compares: the marker itself.
func markerState(m Marker) checkState {
	return sha256.Sum256([]byte(m.Org + "\x00" + m.UID + "\x00" + m.Cluster))
}

// accessState is what an access check compares: the organization, its
// prefix, and the key its Secret holds.
func accessState(req AccessRequest) checkState {
	return sha256.Sum256([]byte(req.Marker.UID + "\x00" + req.Prefix + "\x00" + req.Current.ID + "\x00" + req.Current.Secret))
}

// EnsurePrefixAtRest is EnsurePrefix for an organization at rest: the
// marker is read only when its check is due (Config.CheckPeriod), and was
// found as m then.
func (s *Service) EnsurePrefixAtRest(ctx context.Context, prefix string, m Marker) (bool, error) {
	start := s.now()
	if s.rest.rests(markerCheck(prefix), m.UID, markerState(m), start) {
		return false, nil
	}
	created, err := s.EnsurePrefix(ctx, prefix, m)
	if err == nil {
		s.rest.done(markerCheck(prefix), markerState(m), start, false)
	}
	return created, err
}

// restingAccess returns the access of an organization at rest that needs
// no call but the shared listing of users: the request is the settled one
// of an organization at rest, its access check is not due, and its user is
// listed under the IAM path (with its UID, where the listing has tags).
func (s *Service) restingAccess(ctx context.Context, req AccessRequest) (Access, bool, error) {
	a := Access{User: UserName(req.Org)}
	if !req.AtRest || !oneKey(req) || !s.rest.rests(accessCheck(req.Org), req.Marker.UID, accessState(req), s.now()) {
		return a, false, nil
	}
	u, found, err := s.listedUser(ctx, a.User)
	if errors.Is(err, errNoUserList) {
		// Checked in full, as before the listing.
		return a, false, nil
	}
	if err != nil {
		return a, false, err
	}
	if !found || u.path != s.cfg.IAMPath || (u.tagged && u.uid != req.Marker.UID) {
		s.rest.forget(accessCheck(req.Org))
		return a, false, nil
	}
	a.Key = req.Current
	return a, true, nil
}

// oneKey reports whether req asks for access with the one key the Secret
// holds: no rotation, previous or pending key, whose handling calls IAM
// and S3 at every pass.
func oneKey(req AccessRequest) bool {
	return !req.None && !req.Rotate && req.Current.ID != "" && req.Current.Secret != "" &&
		req.Previous.ID == "" && req.Pending.ID == ""
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// now is the service's clock: time.Now, or a test's.
func (s *Service) now() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}
