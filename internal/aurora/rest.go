package aurora

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Rest is an organization's objects as EnsureRole, EnsureDatabase,
// SecureDatabaseAccess and EnsureLogins leave them, for AtRest.
type Rest struct {
	// Role is the owner role; a spec with a verifier is never at rest,
	// as setting a password is work to do.
	Role RoleSpec
	// Database is owned by Role.Name and carries Role.Marker.
	Database string
	// Logins, when set, are the logins EnsureLogins would be given.
	Logins *LoginsSpec
}

// AtRest reports whether a catalog snapshot of the server, taken no longer
// than maxAge ago, shows rest's objects exactly as the Ensure calls would
// leave them, so that those calls would send no DDL. The snapshot is one
// query for every marked role and database of the server, shared by all
// the organizations checked within maxAge and refreshed by one caller at a
// time. An object the service has written since the snapshot was taken,
// one absent from it, or a snapshot that cannot be read is not at rest:
// the caller then observes the server live, as the Ensure calls do. A
// change made by someone else after the snapshot is seen at the first
// check after the next refresh, at most maxAge later.
func (s *Service) AtRest(ctx context.Context, rest Rest, maxAge time.Duration) bool {
	if maxAge <= 0 || rest.Role.Verifier != "" {
		return false
	}
	snap, err := s.snaps.get(ctx, maxAge, s.readSnapshot)
	if err != nil {
		s.log.V(1).Info("Catalog snapshot unavailable; observing live", "error", err.Error())
		return false
	}
	names := []string{rest.Role.Name, rest.Database}
	if rest.Logins != nil {
		for _, l := range rest.Logins.Logins {
			names = append(names, l.Name)
		}
	}
	if s.snaps.writtenSince(snap, names) {
		return false
	}
	return snap.shows(rest)
}

// snapshot is one read of the server's marked roles and databases.
type snapshot struct {
	// seq is the service's write counter when the read began, taken
	// names the time: objects written later may differ from it.
	seq   uint64
	taken time.Time
	roles map[string]roleSnap
	dbs   map[string]dbSnap
}

// roleSnap is what a snapshot holds of a role: what observeRole and
// observeLogins read, with the roles it is a member of by name. Comments
// are kept as their hash (see commentHash): a snapshot holds every
// organization of the cluster, and a marker is most of what it would hold.
type roleSnap struct {
	comment                   uint64
	connLimit                 int32
	canLogin, inherit, member bool
	config, memberOf          []string
}

// dbSnap is what a snapshot holds of a database: what observeDatabase and
// publicHasAccess read, and the roles granted CONNECT by name.
type dbSnap struct {
	comment   uint64
	owner     string
	publicHas bool
	connect   []string
}

// commentSeed keys commentHash with this process's own seed, so that no
// one can choose a comment whose hash is a marker's.
var commentSeed = maphash.MakeSeed()

// commentHash is what a snapshot keeps of a comment.
func commentHash(comment string) uint64 { return maphash.String(commentSeed, comment) }

// shows reports whether the snapshot holds rest as the Ensure calls leave
// it: their decisions, taken on the snapshot's state, send nothing. A
// comment counts only when it is the marker itself, which the Ensure calls
// leave alone; any other marker of the organization goes to them.
func (snap *snapshot) shows(rest Rest) bool {
	spec := rest.Role
	marker := spec.Marker.String()
	want := commentHash(marker)
	role, ok := snap.roles[spec.Name]
	if !ok || role.comment != want {
		return false
	}
	// EnsureRole.
	rs := roleState{exists: true, canLogin: role.canLogin, connLimit: role.connLimit, comment: marker, member: role.member}
	if stmts, err := alterRoleStatements(spec, rs); err != nil || len(stmts) > 0 {
		return false
	}
	// EnsureDatabase, then SecureDatabaseAccess, which does nothing while
	// PUBLIC has no privilege on the database.
	db, ok := snap.dbs[rest.Database]
	if !ok || db.owner != spec.Name || db.comment != want || db.publicHas {
		return false
	}
	if rest.Logins == nil {
		return true
	}
	// EnsureLogins: an inactive login is left as it is unless it is ours
	// and may log in. The snapshot holds every marked role: one that may
	// log in, whoever's marker it has, goes to EnsureLogins to decide.
	ls := *rest.Logins
	if ls.Marker != spec.Marker || ls.Database != rest.Database {
		return false
	}
	for _, l := range ls.Logins {
		st, ok := snap.roles[l.Name]
		if !l.Active {
			if ok && st.canLogin {
				return false
			}
			continue
		}
		if !ok || l.Verifier != "" || st.comment != want {
			return false
		}
		login := loginState{name: l.Name, canLogin: st.canLogin, inherit: st.inherit, connLimit: st.connLimit,
			comment: marker, config: st.config, member: st.member,
			inOwner: slices.Contains(st.memberOf, ls.Owner), connect: slices.Contains(db.connect, l.Name)}
		if stmts, err := alterLoginStatements(ls, l, login); err != nil || len(stmts) > 0 {
			return false
		}
	}
	return true
}

// snapshotQuery reads, for every role and database whose comment is an
// orgforge marker, what observeRole, observeLogins, observeDatabase and
// publicHasAccess read of one. Roles come first with kind 'r', then
// databases with kind 'd'; the columns the other kind has are filled with
// constants. $1 is versionRules.memberPrivilege.
const snapshotQuery = `SELECT 'r', r.rolname::text, c.description,
		r.rolcanlogin, r.rolinherit, r.rolconnlimit, pg_has_role(current_user, r.oid, $1),
		COALESCE(r.rolconfig, '{}'),
		ARRAY(SELECT o.rolname::text FROM pg_auth_members m JOIN pg_roles o ON o.oid = m.roleid WHERE m.member = r.oid),
		''::text, false
	FROM pg_roles r JOIN pg_shdescription c ON c.objoid = r.oid AND c.classoid = 'pg_authid'::regclass
	WHERE c.description LIKE 'orgforge:%'
	UNION ALL
	SELECT 'd', d.datname::text, c.description,
		false, false, 0, false,
		ARRAY(SELECT pg_get_userbyid(a.grantee)::text FROM aclexplode(d.datacl) a
			WHERE a.privilege_type = 'CONNECT' AND a.grantee <> 0),
		'{}'::text[], pg_get_userbyid(d.datdba)::text,
		EXISTS (SELECT 1 FROM aclexplode(COALESCE(d.datacl, acldefault('d', d.datdba))) a WHERE a.grantee = 0)
	FROM pg_database d JOIN pg_shdescription c ON c.objoid = d.oid AND c.classoid = 'pg_database'::regclass
	WHERE c.description LIKE 'orgforge:%'`

// readSnapshot reads the server's marked roles and databases in one query.
// It is tried once: the callers then check live, with retries, and report
// a failure there.
func (s *Service) readSnapshot(ctx context.Context) (*snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout+s.cfg.StatementTimeout)
	defer cancel()
	snap := &snapshot{roles: map[string]roleSnap{}, dbs: map[string]dbSnap{}}
	rows, err := s.admin.Query(ctx, snapshotQuery, s.rules.memberPrivilege)
	if err != nil {
		return nil, err
	}
	var kind, name, comment, owner string
	var r roleSnap
	var publicHas bool
	var names, memberOf []string
	_, err = pgx.ForEachRow(rows, []any{&kind, &name, &comment, &r.canLogin, &r.inherit, &r.connLimit,
		&r.member, &names, &memberOf, &owner, &publicHas}, func() error {
		if kind == "d" {
			snap.dbs[name] = dbSnap{comment: commentHash(comment), owner: owner, publicHas: publicHas, connect: slices.Clone(names)}
			return nil
		}
		r.comment = commentHash(comment)
		r.config, r.memberOf = slices.Clone(names), slices.Clone(memberOf)
		snap.roles[name] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return snap, nil
}

// maxWrittenRecords bounds the record of writes between refreshes;
// snapshotReadTimeout bounds a shared read.
const (
	maxWrittenRecords   = 100_000
	snapshotReadTimeout = 30 * time.Second
)

// errSnapshotFailed is the answer while a failed read is recent.
var errSnapshotFailed = errors.New("the last catalog snapshot could not be read")

// snapshots keeps a service's latest snapshot and what the service wrote
// since: every write counts up seq and records it for the objects written.
type snapshots struct {
	mu      sync.Mutex
	cur     *snapshot
	seq     uint64
	written map[string]uint64
	// prunedTo is the seq up to which written was last pruned: a snapshot
	// read before it may not show writes whose record is gone.
	prunedTo uint64
	// flight is the read under way, if any.
	flight *snapshotFlight
	// failed is when the last read failed: no other is tried for a max
	// age, so that an outage costs each check no more than its own
	// queries.
	failed time.Time
}

type snapshotFlight struct {
	done chan struct{}
	snap *snapshot
	err  error
}

// wrote records a write, or an attempt, to the objects names.
func (ss *snapshots) wrote(names ...string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.seq++
	if ss.cur == nil && ss.flight == nil {
		// No snapshot exists: the first one is read after this write.
		return
	}
	if ss.written == nil || len(ss.written) >= maxWrittenRecords {
		// Pruned only by a refresh, which may not come (no organization
		// settled): forgetting every record distrusts the snapshots read
		// so far instead.
		ss.written, ss.prunedTo = map[string]uint64{}, ss.seq
	}
	for _, n := range names {
		ss.written[n] = ss.seq
	}
}

// writtenSince reports whether one of names was written after snap's read
// began, which snap may then not show.
func (ss *snapshots) writtenSince(snap *snapshot, names []string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if snap.seq < ss.prunedTo {
		return true
	}
	for _, n := range names {
		if ss.written[n] > snap.seq {
			return true
		}
	}
	return false
}

// get returns a snapshot no older than maxAge, reading one with read when
// there is none; callers that arrive during a read wait for it.
func (ss *snapshots) get(ctx context.Context, maxAge time.Duration, read func(context.Context) (*snapshot, error)) (*snapshot, error) {
	ss.mu.Lock()
	if ss.cur != nil && time.Since(ss.cur.taken) <= maxAge {
		defer ss.mu.Unlock()
		return ss.cur, nil
	}
	if time.Since(ss.failed) < maxAge {
		ss.mu.Unlock()
		return nil, errSnapshotFailed
	}
	if f := ss.flight; f != nil {
		ss.mu.Unlock()
		select {
		case <-f.done:
			return f.snap, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &snapshotFlight{done: make(chan struct{})}
	ss.flight = f
	seq, taken := ss.seq, time.Now()
	ss.mu.Unlock()

	// The read is shared: one caller's cancelled reconcile must not fail
	// it for the others, nor mark it failed for a max age.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), snapshotReadTimeout)
	f.snap, f.err = read(rctx)
	cancel()
	ss.mu.Lock()
	if f.err != nil {
		ss.failed = time.Now()
	} else {
		f.snap.seq, f.snap.taken = seq, taken
		ss.cur = f.snap
		// Writes the snapshot shows need no record any more; a snapshot
		// read before it no longer knows what was written since.
		for n, at := range ss.written {
			if at <= seq {
				delete(ss.written, n)
			}
		}
		ss.prunedTo = seq
	}
	ss.flight = nil
	ss.mu.Unlock()
	close(f.done)
	return f.snap, f.err
}
