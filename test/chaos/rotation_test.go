package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/naming"
	"github.com/orgforge/orgforge/internal/storage"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestRotationUnderKillsAndIAMDelay rotates the database login and the S3
// access key of a set of organizations several times, by new
// rotationTokens, some of which come while the previous grace period still
// runs, while the operator is SIGKILLed at random moments and started
// again, under IAM's propagation delay. Applications hold open pools on
// some of the organizations and query them all along, and log in anew
// with the Secrets' credentials, current and previous. Once the world
// settles, every Secret's credentials work and every earlier one is
// refused, each organization has one login and one access key, the status
// agrees with the Secrets, and nothing is left once they are deleted.
func TestRotationUnderKillsAndIAMDelay(t *testing.T) {
	sc := env.scale
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 17))
	t.Logf("token and kill schedule seed %d", seed)

	store, flags := startDelayedStore(t, sc.rotationIAMDelay)
	all := names("rot", sc.rotationOrgs)
	cleanupOrgs(t, all, flags...)
	op := startOperator(t, "rotation-0", flags...)

	grace := &metav1.Duration{Duration: sc.rotationGrace}
	var created []*tenancyv1alpha1.Organization
	var appOrgs []string
	for i, n := range all {
		// An application's pool of 2, and a new connection with the
		// previous login while the first grace period runs, fit in 3.
		pool := testutil.WithPool(1, 1)
		if i%sc.rotationAppEvery == 0 {
			pool = testutil.WithPool(1, 3)
			appOrgs = append(appOrgs, n)
		}
		created = append(created, newOrg(n, pool, func(o *tenancyv1alpha1.Organization) { o.Spec.Credentials.GracePeriod = grace }))
	}
	create(t, created...)
	waitReady(t, all, sc.converge)
	sum.orgs(len(all), 0)

	ctx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	log := watchRotations(ctx, all)
	samples := sampleLogins(ctx, store, all)
	apps := make([]*rotationApp, len(appOrgs))
	for i, n := range appOrgs {
		apps[i] = startRotationApp(t, store, n)
	}

	// The token rounds come 3s to a grace period and an IAM delay apart,
	// so that some come while the previous grace period runs. Every other
	// kill falls within an IAM delay after a round, while switches are
	// under way and keys pending; the others anywhere until the last
	// round's grace period would end, revocations included.
	type event struct {
		at    time.Duration
		round int // 0 for a kill
	}
	var events []event
	at := time.Duration(0)
	for r := 1; r <= sc.rotationRounds; r++ {
		events = append(events, event{at: at, round: r})
		at += 3*time.Second + time.Duration(rng.Int64N(int64(sc.rotationGrace+sc.rotationIAMDelay-3*time.Second)))
	}
	end := at + sc.rotationGrace
	rounds := slices.Clone(events)
	for k := range sc.rotationKills {
		kill := 500*time.Millisecond + time.Duration(rng.Int64N(int64(end)))
		if k%2 == 0 {
			kill = rounds[rng.IntN(len(rounds))].at + 200*time.Millisecond + time.Duration(rng.Int64N(int64(sc.rotationIAMDelay)))
		}
		events = append(events, event{at: kill})
	}
	sort.SliceStable(events, func(i, j int) bool { return events[i].at < events[j].at })
	start := time.Now()
	kills, midRotation, last, lastRound := 0, 0, "", time.Time{}
	for _, e := range events {
		time.Sleep(time.Until(start.Add(e.at)))
		if e.round > 0 {
			last, lastRound = fmt.Sprintf("r%d", e.round), time.Now()
			log.setToken(t, all, last)
			continue
		}
		assertAlive(t, op)
		if log.underWay(last) > 0 {
			midRotation++
		}
		op.Kill()
		kills++
		sum.kill("rotation")
		op = startOperator(t, fmt.Sprintf("rotation-%d", kills), flags...)
	}
	waitRotated(t, all, last, sc.converge)
	settled := time.Since(lastRound)
	assertAlive(t, op)
	for _, a := range apps {
		a.stopProbing()
	}

	w := checkRotatedWorld(t, store, all, log)
	pools := 0
	var queries, failed, dropped, logins, loginsFailed, puts, putsFailed int64
	for _, a := range apps {
		d := a.finish(t)
		pools++
		queries += a.queries.Load()
		failed += a.failed.Load()
		dropped += int64(d)
		logins += a.logins.Load()
		loginsFailed += a.loginsFailed.Load()
		puts += a.puts.Load()
		putsFailed += a.putsFailed.Load()
	}
	stopWatching()
	samples.wait()
	if samples.mostLogins > 2 || samples.mostKeys > 2 {
		t.Errorf("at some moment an organization had %d logins that could log in and %d IAM access keys; at most 2 of each", samples.mostLogins, samples.mostKeys)
	}

	st := log.figures()
	sum.figure("rotation: %d orgs, %d token rounds (%d of %d tokens set while a grace period ran), %d SIGKILLs (%d while a rotation was under way), grace %s, IAM delay %s: %d database and %d access key switches; settled %s after the last round",
		len(all), sc.rotationRounds, st.inGrace, st.tokens, kills, midRotation, sc.rotationGrace, sc.rotationIAMDelay, st.dbSwitches, st.keySwitches,
		settled.Round(time.Second))
	sum.figure("rotation: first unanswered token to Secret switched, median: database %s (%d switches), access key %s (%d); for a token that came during the grace period, which it waits out: database %s (%d), access key %s (%d)",
		median(st.dbLatency), len(st.dbLatency), median(st.keyLatency), len(st.keyLatency),
		median(st.dbWaited), len(st.dbWaited), median(st.keyWaited), len(st.keyWaited))
	sum.figure("rotation: %d application pools of 2 ran %d queries: %d failed, %d connections dropped; %d new logins and %d S3 writes with the Secrets' current and in-grace credentials: %d and %d failed",
		pools, queries, failed, dropped, logins, puts, loginsFailed, putsFailed)
	sum.figure("rotation: after settling, %d earlier database credentials and %d earlier access keys refused; at most %d logins and %d keys per organization seen at any moment",
		w.oldLogins, w.oldKeys, samples.mostLogins, samples.mostKeys)
	if failed+dropped+loginsFailed+putsFailed > 0 {
		for _, a := range apps {
			if e := a.lastErr.Load(); e != nil {
				t.Errorf("%s: last application error: %v", a.org, e)
			}
		}
		t.Errorf("%d queries failed, %d connections dropped, %d new logins and %d S3 writes with the Secrets' credentials failed; want 0",
			failed, dropped, loginsFailed, putsFailed)
	}

	deleteOrgs(t, all...)
	waitGone(t, all, sc.converge)
	assertAlive(t, op)
	verifyGone(t, store, "rot", all)
	sum.orgs(0, len(all))
}

// startDelayedStore starts an S3 and IAM server of the scenario's own with
// the stack's IAM delay mode on, and returns it with the operator flags
// that point the operator at it. The suite's shared server has the mode
// off: the other scenarios' figures do not include the delay.
func startDelayedStore(t *testing.T, delay time.Duration) (objectStore, []string) {
	t.Helper()
	dir := filepath.Join(env.dir, "rotation")
	s3, err := devstack.StartS3With(context.Background(), dir, devstack.S3Options{IAMDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s3.Close() })
	env.collectors.lookFor(s3.SecretKey, "the S3/IAM root secret key of the rotation scenario's server")
	store, err := newObjectStore(context.Background(), s3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.storage.Close)
	keyID, secretKey := filepath.Join(dir, "s3-access-key-id"), filepath.Join(dir, "s3-secret-access-key")
	for path, v := range map[string]string{keyID: s3.AccessKey, secretKey: s3.SecretKey} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Given after the stack's flags, these win.
	return store, []string{
		"--s3-bucket=" + s3.Bucket, "--s3-region=" + s3.Region,
		"--s3-endpoint=" + s3.Endpoint, "--iam-endpoint=" + s3.IAMEndpoint,
		"--s3-access-key-id-file=" + keyID, "--s3-secret-access-key-file=" + secretKey,
	}
}

// credential is a login and its password, or an access key and its secret.
type credential struct{ id, secret string }

// rotationLog follows every version of the scenario's Secrets: the
// credentials they held, their switches, and how long after its token each
// switch came.
type rotationLog struct {
	w  *collectors
	mu sync.Mutex
	// last is each Secret's latest version, by name.
	last map[string]*corev1.Secret
	// logins and keys are every credential the Secrets held, by
	// organization.
	logins, keys map[string]map[credential]bool
	// unanswered is, by Secret name, the first token set since the
	// Secret's last switch: a later token replaces it, and one switch
	// answers both.
	unanswered map[string]tokenSet
	stats      rotationStats
}

// tokenSet is when a token was set and whether the Secret's grace period
// ran then.
type tokenSet struct {
	at    time.Time
	grace bool
}

// rotationStats are a rotationLog's figures. The latencies go from the
// first token a Secret had not answered to its switch; a token set during
// the grace period of the Secret's previous credential waits for it to end.
type rotationStats struct {
	tokens, inGrace, dbSwitches, keySwitches int
	dbLatency, keyLatency                    []time.Duration
	dbWaited, keyWaited                      []time.Duration
}

func watchRotations(ctx context.Context, orgs []string) *rotationLog {
	l := &rotationLog{w: &collectors{}, last: map[string]*corev1.Secret{},
		logins: map[string]map[credential]bool{}, keys: map[string]map[credential]bool{}, unanswered: map[string]tokenSet{}}
	for _, n := range orgs {
		l.logins[n], l.keys[n] = map[credential]bool{}, map[credential]bool{}
	}
	managed := client.MatchingLabels{controllers.LabelManagedBy: controllers.ManagedByValue}
	l.w.run(ctx, env.k8s, func() client.ObjectList { return &corev1.SecretList{} }, []client.ListOption{managed}, func(o runtime.Object) {
		l.seen(o.(*corev1.Secret), time.Now())
	})
	return l
}

// seen records one version of a Secret.
func (l *rotationLog) seen(s *corev1.Secret, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	org, kind, found := strings.Cut(s.Name, "-database")
	if !found || kind != "" {
		org, kind, found = strings.Cut(s.Name, "-storage")
		if !found || kind != "" {
			return
		}
		kind = "storage"
	} else {
		kind = "database"
	}
	if _, ours := l.logins[org]; !ours {
		return
	}
	d := s.Data
	idKey, secretKey, creds := "username", "password", l.logins[org]
	if kind == "storage" {
		idKey, secretKey, creds = "access-key-id", "secret-access-key", l.keys[org]
	}
	for _, p := range []string{"", "previous-", "pending-"} {
		if id := string(d[p+idKey]); id != "" {
			creds[credential{id, string(d[p+secretKey])}] = true
		}
	}
	prev := l.last[s.Name]
	l.last[s.Name] = s
	if prev == nil || string(prev.Data[idKey]) == string(d[idKey]) {
		return
	}
	set, known := l.unanswered[s.Name]
	delete(l.unanswered, s.Name)
	st := &l.stats
	switch {
	case kind == "storage":
		st.keySwitches++
	default:
		st.dbSwitches++
	}
	switch {
	case !known:
	case kind == "storage" && set.grace:
		st.keyWaited = append(st.keyWaited, now.Sub(set.at))
	case kind == "storage":
		st.keyLatency = append(st.keyLatency, now.Sub(set.at))
	case set.grace:
		st.dbWaited = append(st.dbWaited, now.Sub(set.at))
	default:
		st.dbLatency = append(st.dbLatency, now.Sub(set.at))
	}
}

// setToken sets every organization's rotationToken, as GitOps would, and
// notes which ones came during a grace period.
func (l *rotationLog) setToken(t *testing.T, orgs []string, token string) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"credentials":{"rotationToken":%q}}}`, token)
	errs := testutil.Parallel(orgs, 16, func(n string) error {
		l.mu.Lock()
		now, grace := time.Now(), false
		for _, name := range []string{naming.DatabaseSecretName(n), naming.StorageSecretName(n)} {
			s := l.last[name]
			if s == nil {
				continue
			}
			until, err := time.Parse(time.RFC3339, s.Annotations[controllers.AnnotationPreviousValidUntil])
			set := tokenSet{at: now, grace: err == nil && now.Before(until)}
			grace = grace || set.grace
			if _, ok := l.unanswered[name]; !ok {
				l.unanswered[name] = set
			}
		}
		l.stats.tokens++
		if grace {
			l.stats.inGrace++
		}
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: n}}
		return env.k8s.Patch(ctx, o, client.RawPatch(types.MergePatchType, patch))
	})
	for _, err := range errs {
		t.Fatal(err)
	}
}

// underWay counts the Secrets, as last seen, that have yet to answer token
// or hold a pending key.
func (l *rotationLog) underWay(token string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.last {
		if _, pending := s.Data["pending-access-key-id"]; pending || s.Annotations[controllers.AnnotationRotationToken] != token {
			n++
		}
	}
	return n
}

// figures returns the stats so far.
func (l *rotationLog) figures() rotationStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stats
	st.dbLatency, st.keyLatency = slices.Clone(st.dbLatency), slices.Clone(st.keyLatency)
	st.dbWaited, st.keyWaited = slices.Clone(st.dbWaited), slices.Clone(st.keyWaited)
	return st
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(10 * time.Millisecond)
}

// loginSamples watches, all along, how many of each organization's roles
// may log in and how many access keys its IAM user has.
type loginSamples struct {
	wg                   sync.WaitGroup
	mostLogins, mostKeys int
}

func sampleLogins(ctx context.Context, store objectStore, orgs []string) *loginSamples {
	s := &loginSamples{}
	owner := map[string]string{}
	for _, n := range orgs {
		r := naming.RoleName(n)
		l := naming.LoginNames(n)
		owner[r], owner[l[0]], owner[l[1]] = n, n, n
	}
	s.wg.Go(func() {
		for ctx.Err() == nil {
			rows, err := env.su.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolcanlogin AND starts_with(rolname, $1)`, naming.RoleName("rot"))
			if err == nil {
				names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
				per := map[string]int{}
				for _, n := range names {
					per[owner[n]]++
				}
				for _, c := range per {
					s.mostLogins = max(s.mostLogins, c)
				}
			}
			sleep(ctx, 200*time.Millisecond)
		}
	})
	s.wg.Go(func() {
		for ctx.Err() == nil {
			for _, n := range orgs {
				if keys, err := store.storage.ListAccessKeys(ctx, storage.UserName(n)); err == nil {
					s.mostKeys = max(s.mostKeys, len(keys))
				}
				sleep(ctx, 20*time.Millisecond)
			}
		}
	})
	return s
}

// wait returns once sampling has stopped; its context must be done.
func (s *loginSamples) wait() { s.wg.Wait() }

// waitRotated waits until every organization has acted on token and no
// grace period runs: both Secrets answer the token and hold no previous or
// pending credential, and the status says so.
func waitRotated(t *testing.T, orgNames []string, token string, timeout time.Duration) time.Duration {
	t.Helper()
	return testutil.EventuallyEvery(t, time.Second, timeout, "every organization rotated for "+token+" and past its grace period", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		all, err := orgs(ctx)
		if err != nil {
			return false, err.Error()
		}
		done := 0
		example := ""
		for _, n := range orgNames {
			why := rotatedFor(ctx, all[n], token)
			if why == "" {
				done++
			} else if example == "" {
				example = n + ": " + why
			}
		}
		return done == len(orgNames), fmt.Sprintf("%d/%d settled; e.g. %s", done, len(orgNames), example)
	})
}

// rotatedFor says why o has not settled on token, or "".
func rotatedFor(ctx context.Context, o *tenancyv1alpha1.Organization, token string) string {
	if o == nil {
		return "missing"
	}
	if !testutil.ReadyAtGeneration(o) {
		return testutil.DescribeCondition(o, tenancyv1alpha1.ConditionReady)
	}
	if st := o.Status.Credentials; st.RotationToken != token || st.PreviousValidUntil != nil {
		return fmt.Sprintf("status.credentials %+v", st)
	}
	for _, name := range []string{naming.DatabaseSecretName(o.Name), naming.StorageSecretName(o.Name)} {
		s, err := getSecret(ctx, o, name)
		if err != nil {
			return err.Error()
		}
		if got := s.Annotations[controllers.AnnotationRotationToken]; got != token {
			return fmt.Sprintf("Secret %s answers token %q", name, got)
		}
		for k := range s.Data {
			if strings.HasPrefix(k, "previous-") || strings.HasPrefix(k, "pending-") {
				return fmt.Sprintf("Secret %s still holds %s", name, k)
			}
		}
	}
	return ""
}

// rotatedWorld is what checkRotatedWorld counted.
type rotatedWorld struct {
	oldLogins, oldKeys int
}

// checkRotatedWorld checks every settled organization against the world:
// its Secrets' login and key work, the key on its own prefix only; every
// earlier credential is refused; it has no role outside its owner and two
// logins, and only the Secret's login may log in; its IAM user has the
// Secret's key only; and its status names what the Secrets hold.
func checkRotatedWorld(t *testing.T, store objectStore, orgNames []string, log *rotationLog) rotatedWorld {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	all, err := orgs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := env.su.Query(ctx, `SELECT rolname, rolcanlogin FROM pg_roles WHERE starts_with(rolname, $1)`, naming.RoleName("rot"))
	if err != nil {
		t.Fatal(err)
	}
	canLogin := map[string]bool{}
	var name string
	var login bool
	if _, err := pgx.ForEachRow(rows, []any{&name, &login}, func() error { canLogin[name] = login; return nil }); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	var w rotatedWorld
	var mu sync.Mutex
	errs := testutil.Parallel(orgNames, 4, func(n string) error {
		o, ok := all[n]
		if !ok {
			return fmt.Errorf("%s is missing", n)
		}
		ds, err := getSecret(ctx, o, naming.DatabaseSecretName(n))
		if err != nil {
			return err
		}
		ss, err := getSecret(ctx, o, naming.StorageSecretName(n))
		if err != nil {
			return err
		}
		current := credential{string(ds.Data["username"]), string(ds.Data["password"])}
		key := credential{string(ss.Data["access-key-id"]), string(ss.Data["secret-access-key"])}
		var problems []string
		if err := loginAs(ctx, ds, current); err != nil {
			problems = append(problems, fmt.Sprintf("the Secret's login %s does not work: %v", current.id, err))
		}
		if err := keyOnItsPrefixOnly(ctx, store, n, ss, orgNames); err != nil {
			problems = append(problems, err.Error())
		}
		log.mu.Lock()
		oldLogins, oldKeys := members(log.logins[n]), members(log.keys[n])
		log.mu.Unlock()
		refusedLogins, refusedKeys := 0, 0
		for _, c := range oldLogins {
			if c == current {
				continue
			}
			err := loginAs(ctx, ds, c)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || !strings.HasPrefix(pgErr.Code, "28") {
				problems = append(problems, fmt.Sprintf("an earlier password of login %s is not refused: %v", c.id, err))
				continue
			}
			refusedLogins++
		}
		for _, c := range oldKeys {
			if c == key {
				continue
			}
			err := testutil.PutObject(ctx, store.s3.Client(c.id, c.secret), store.s3.Bucket, string(ss.Data["prefix"])+"old-key.txt", "x")
			if !keyRefused(err) {
				problems = append(problems, fmt.Sprintf("earlier access key %s is not refused: %v", c.id, err))
				continue
			}
			refusedKeys++
		}
		var logins []string
		owner, l := naming.RoleName(n), naming.LoginNames(n)
		for _, r := range []string{owner, l[0], l[1]} {
			if canLogin[r] {
				logins = append(logins, r)
			}
		}
		if !slices.Equal(logins, []string{current.id}) {
			problems = append(problems, fmt.Sprintf("roles that may log in %v, want only the Secret's %s", logins, current.id))
		}
		if keys, err := store.storage.ListAccessKeys(ctx, storage.UserName(n)); err != nil || !slices.Equal(keys, []string{key.id}) {
			problems = append(problems, fmt.Sprintf("IAM user %s has keys %v (%v), want only the Secret's %s", storage.UserName(n), keys, err, key.id))
		}
		if st := o.Status.Credentials; st.DatabaseLogin != current.id || st.AccessKeyID != key.id || st.LastRotation == nil {
			problems = append(problems, fmt.Sprintf("status.credentials %+v, but the Secrets hold login %s and key %s", st, current.id, key.id))
		}
		mu.Lock()
		known[owner], known[l[0]], known[l[1]] = true, true, true
		w.oldLogins += refusedLogins
		w.oldKeys += refusedKeys
		mu.Unlock()
		if len(problems) > 0 {
			return fmt.Errorf("%s: %s", n, strings.Join(problems, "; "))
		}
		return nil
	})
	for _, err := range errs {
		t.Error(err)
	}
	for r := range canLogin {
		if !known[r] {
			t.Errorf("role %s belongs to no organization of the scenario", r)
		}
	}
	return w
}

func members(m map[credential]bool) []credential {
	out := make([]credential, 0, len(m))
	for c := range m {
		out = append(out, c)
	}
	return out
}

// loginAs opens one connection to the database Secret's database as c.
func loginAs(ctx context.Context, ds *corev1.Secret, c credential) error {
	cfg, err := pgx.ParseConfig(connString(string(ds.Data["uri"]), string(ds.Data["dbname"])))
	if err != nil {
		return err
	}
	cfg.User, cfg.Password = c.id, c.secret
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	// Whichever login, the session acts as the owner, whose name is the
	// database's.
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		return err
	}
	if owner := string(ds.Data["dbname"]); user != owner {
		return fmt.Errorf("the session acts as %s, want the owner %s", user, owner)
	}
	return nil
}

// keyRefused reports whether S3 refused a request for its credentials.
func keyRefused(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode() {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied":
		return true
	}
	return false
}

// keyOnItsPrefixOnly writes and reads back an object under the storage
// Secret's prefix with its key, and is denied another organization's
// prefix and the bucket outside the organizations' prefixes.
func keyOnItsPrefixOnly(ctx context.Context, store objectStore, org string, ss *corev1.Secret, orgNames []string) error {
	c := store.s3.Client(string(ss.Data["access-key-id"]), string(ss.Data["secret-access-key"]))
	prefix := string(ss.Data["prefix"])
	if err := testutil.PutObject(ctx, c, store.s3.Bucket, prefix+"settled.txt", org); err != nil {
		return fmt.Errorf("the Secret's key %s does not write its prefix %s: %w", ss.Data["access-key-id"], prefix, err)
	}
	if got, err := testutil.GetObject(ctx, c, store.s3.Bucket, prefix+"settled.txt"); err != nil || got != org {
		return fmt.Errorf("the Secret's key reads back %q, %v", got, err)
	}
	other := orgNames[(slices.Index(orgNames, org)+1)%len(orgNames)]
	for _, k := range []string{strings.Replace(prefix, org, other, 1) + "planted.txt", "outside/" + org + ".txt"} {
		if err := testutil.PutObject(ctx, c, store.s3.Bucket, k, org); !testutil.IsAccessDenied(err) {
			return fmt.Errorf("the Secret's key may write %s: %v", k, err)
		}
	}
	return nil
}

// rotationApp is an application on one organization: a pool of two
// connections opened before any rotation and queried all along, and a
// prober that, every second, re-reads the Secrets as a mounted volume
// would and logs in anew and writes to S3 with the current credentials,
// and with the previous ones while their grace period has more than two
// seconds to run.
type rotationApp struct {
	org          string
	pool         *pgxpool.Pool
	pids         []int32
	stopQueries  atomic.Bool
	stopProbes   context.CancelFunc
	queriesDone  sync.WaitGroup
	probesDone   sync.WaitGroup
	queries      atomic.Int64
	failed       atomic.Int64
	logins       atomic.Int64
	loginsFailed atomic.Int64
	puts         atomic.Int64
	putsFailed   atomic.Int64
	lastErr      atomic.Value
}

func startRotationApp(t *testing.T, store objectStore, org string) *rotationApp {
	t.Helper()
	ctx := context.Background()
	o := &tenancyv1alpha1.Organization{ObjectMeta: metav1.ObjectMeta{Name: org}}
	ds, err := getSecret(ctx, o, naming.DatabaseSecretName(org))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(string(ds.Data["uri"]))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MinConns, cfg.MaxConns = 2, 2
	a := &rotationApp{org: org}
	if a.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.pool.Close)
	if _, err := a.pool.Exec(ctx, "CREATE TABLE app_log (n bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		t.Fatalf("%s: %v", org, err)
	}
	a.pids = backendPIDs(t, a.pool, 2)
	// The first key is new: S3 refuses it for the IAM delay.
	testutil.Eventually(t, store.s3.IAMDelay+30*time.Second, org+"'s first access key to work", func() (bool, string) {
		ss, err := getSecret(ctx, o, naming.StorageSecretName(org))
		if err != nil {
			return false, err.Error()
		}
		err = a.put(ctx, store, ss, "")
		return err == nil, fmt.Sprint(err)
	})

	// The queries are stopped between two of them, not by cancelling
	// their context: pgx closes a connection whose query is cancelled.
	for range 2 {
		a.queriesDone.Go(func() {
			for !a.stopQueries.Load() {
				qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				var n int64
				err := a.pool.QueryRow(qctx, "INSERT INTO app_log DEFAULT VALUES RETURNING n").Scan(&n)
				if err == nil {
					err = a.pool.QueryRow(qctx, "SELECT count(*) FROM app_log").Scan(&n)
				}
				cancel()
				a.queries.Add(1)
				if err != nil {
					a.failed.Add(1)
					a.lastErr.Store(fmt.Sprintf("query: %v", err))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	pctx, stopProbes := context.WithCancel(ctx)
	a.stopProbes = stopProbes
	a.probesDone.Go(func() {
		for pctx.Err() == nil {
			a.probe(pctx, store, o)
			sleep(pctx, time.Second)
		}
	})
	return a
}

// probe logs in and writes with each credential the Secrets hand out.
func (a *rotationApp) probe(ctx context.Context, store objectStore, o *tenancyv1alpha1.Organization) {
	ds, err := getSecret(ctx, o, naming.DatabaseSecretName(a.org))
	if err != nil {
		return
	}
	ss, err := getSecret(ctx, o, naming.StorageSecretName(a.org))
	if err != nil {
		return
	}
	count := func(n, failed *atomic.Int64, what string, err error) {
		if ctx.Err() != nil {
			return
		}
		n.Add(1)
		if err != nil {
			failed.Add(1)
			a.lastErr.Store(fmt.Sprintf("%s: %v", what, err))
		}
	}
	count(&a.logins, &a.loginsFailed, "login "+string(ds.Data["username"]),
		loginAs(ctx, ds, credential{string(ds.Data["username"]), string(ds.Data["password"])}))
	if inGrace(ds) {
		count(&a.logins, &a.loginsFailed, "previous login "+string(ds.Data["previous-username"]),
			loginAs(ctx, ds, credential{string(ds.Data["previous-username"]), string(ds.Data["previous-password"])}))
	}
	count(&a.puts, &a.putsFailed, "S3 write with key "+string(ss.Data["access-key-id"]), a.put(ctx, store, ss, ""))
	if inGrace(ss) {
		count(&a.puts, &a.putsFailed, "S3 write with previous key "+string(ss.Data["previous-access-key-id"]), a.put(ctx, store, ss, "previous-"))
	}
}

// inGrace reports whether the Secret holds a previous credential whose
// grace period has more than two seconds to run.
func inGrace(s *corev1.Secret) bool {
	until, err := time.Parse(time.RFC3339, s.Annotations[controllers.AnnotationPreviousValidUntil])
	return err == nil && time.Until(until) > 2*time.Second
}

// put writes an object under the storage Secret's prefix with its key
// named by p: "" or "previous-".
func (a *rotationApp) put(ctx context.Context, store objectStore, ss *corev1.Secret, p string) error {
	c := store.s3.Client(string(ss.Data[p+"access-key-id"]), string(ss.Data[p+"secret-access-key"]))
	return testutil.PutObject(ctx, c, store.s3.Bucket, string(ss.Data["prefix"])+"app.txt", a.org)
}

func (a *rotationApp) stopProbing() {
	a.stopProbes()
	a.probesDone.Wait()
}

// finish stops the queries and returns how many of the pool's first
// connections are gone.
func (a *rotationApp) finish(t *testing.T) int {
	t.Helper()
	a.stopQueries.Store(true)
	a.queriesDone.Wait()
	now := backendPIDs(t, a.pool, 2)
	dropped := 0
	for _, p := range a.pids {
		if !slices.Contains(now, p) {
			dropped++
		}
	}
	return dropped
}

// backendPIDs holds n of the pool's connections at once and returns their
// server processes' ids.
func backendPIDs(t *testing.T, pool *pgxpool.Pool, n int) []int32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var pids []int32
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatalf("acquiring a pool connection: %v", err)
		}
		defer c.Release()
		var pid int32
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatalf("querying through a pool connection: %v", err)
		}
		pids = append(pids, pid)
	}
	return pids
}
