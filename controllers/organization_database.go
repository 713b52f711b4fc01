package controllers

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"

	tenancyv1alpha1 "github.com/orgforge/orgforge/api/v1alpha1"
	"github.com/orgforge/orgforge/internal/aurora"
	"github.com/orgforge/orgforge/internal/naming"
)

// reconcileDatabase ensures the role, the database, its security, the
// extensions and the database Secret, in that order, on the organization's
// DatabaseCluster; placeErr is why it could not be placed there, if it
// could not. The role's password is changed before the Secret is written,
// so a crash between the two is repaired by the next reconcile, which finds
// no Secret and sets a new one.
func (r *OrganizationReconciler) reconcileDatabase(ctx context.Context, s *scope, placeErr error) error {
	err := placeErr
	if err == nil {
		err = runPhases(ctx, s, "database", r.databasePhases())
	}
	what := "DatabaseCluster " + s.cluster
	if s.dbs != nil {
		what += " (PostgreSQL at " + s.dbs.Endpoint() + ")"
	}
	s.outcome.database = databasePart.result(err, what)
	if s.outcome.database.done && s.db.waiting != "" {
		s.outcome.database.message += "; " + s.db.waiting
	}
	return err
}

// databasePhases are the database part, in order; a phase without a step
// only reads or records.
func (r *OrganizationReconciler) databasePhases() []phase {
	return []phase{
		{run: r.resizeBudget},
		{run: r.readDatabaseSecret},
		{run: r.adoptDatabase, when: adoptsDatabase},
		{run: r.planDatabaseRotation},
		{run: r.observeAtRest, when: settled},
		{step: "role", run: r.ensureRole, when: unsettled},
		{step: "database", run: r.ensureDatabase, when: unsettled},
		{step: "secure", run: r.secureDatabase, when: unsettled},
		{step: "extensions", run: r.ensureExtensions, when: hasExtensions},
		{step: "logins", run: r.ensureLogins, when: func(s *scope) bool { return unsettled(s) && hasLogins(s) }},
		{step: "databaseSecret", run: r.writeDatabaseSecret},
		{run: r.releaseBudget},
		{run: r.recordDatabase},
	}
}

// readDatabaseSecret reads the database Secret. Its password is the desired
// one for the login it names: a person may rotate it by editing the Secret.
// One that differs from what the operator last set is given to the login;
// one that cannot be used changes nothing. An organization whose
// credentials rotate has its Secret read past the cache (see freshSecret).
func (r *OrganizationReconciler) readDatabaseSecret(ctx context.Context, s *scope) error {
	secret, err := r.ownedSecret(ctx, s.namespace, naming.DatabaseSecretName(s.org.Name), s)
	if err != nil {
		return err
	}
	if secret != nil && (rotates(s.org) || string(secret.Data["username"]) != s.role) {
		if secret, err = r.freshSecret(ctx, secret); err != nil {
			return err
		}
	}
	s.db.secret, s.db.current = secret, s.role
	rot := readRotation(secret, s.org.Spec.Credentials, time.Now())
	s.db.rot = &rot
	if secret == nil || !s.isLogin(string(secret.Data["username"])) {
		return nil
	}
	s.db.current = string(secret.Data["username"])
	if prev := string(secret.Data["previous-username"]); prev != s.db.current && s.isLogin(prev) && !rot.validUntil.IsZero() {
		s.db.previous, s.db.previousPassword = prev, string(secret.Data["previous-password"])
	}
	password := string(secret.Data["password"])
	if err := checkSecretPassword(password); err != nil {
		return fmt.Errorf("%w: Secret %s/%s: %v; the login keeps its password until the Secret holds a usable one",
			errInvalidSecret, s.namespace, secret.Name, err)
	}
	same, err := r.passwords.matches(s.org.UID, secret.Annotations[AnnotationPasswordVerifier], password)
	s.db.password, s.db.edited = password, err != nil || !same
	return nil
}

// isLogin reports whether name is one of the organization's logins: its
// owner role or one of the two that take turns once credentials rotate.
func (s *scope) isLogin(name string) bool {
	logins := naming.LoginNames(s.org.Name)
	return name == s.role || name == logins[0] || name == logins[1]
}

// nextLogin is the login a rotation from current switches to.
func (s *scope) nextLogin(current string) string {
	logins := naming.LoginNames(s.org.Name)
	if current == logins[0] {
		return logins[1]
	}
	return logins[0]
}

// planDatabaseRotation ends a grace period that is over and starts a
// rotation that is due, in the scope only: the phases after it give the
// logins their state, and the Secret is written last. A rotation switches
// to the standby login with a new password, keeping the current one as
// previous for the grace period; the budget of two logins is taken first.
// A rotation waits while a grace period runs (there are two logins only),
// while its budget does not fit, and while an edited password is applied.
func (r *OrganizationReconciler) planDatabaseRotation(ctx context.Context, s *scope) error {
	spec, now, rot := s.org.Spec.Credentials, time.Now(), *s.db.rot
	defer func() { s.db.wake.schedule(*s.db.rot, spec, now) }()
	if s.db.previous != "" && !rot.inGrace(now) {
		s.db.revoked, s.db.previous, s.db.previousPassword = s.db.previous, "", ""
		rot.validUntil = time.Time{}
		s.db.rot = &rot
	}
	if s.db.previous != "" {
		if err := r.budgetGrace(ctx, s); err != nil {
			return err
		}
	}
	why := rot.due(spec, now)
	if s.db.secret == nil || why == "" {
		return nil
	}
	if s.db.previous != "" {
		// There are two logins only: the deferred schedule wakes the
		// Organization when the grace period ends.
		s.db.waiting = fmt.Sprintf("the credential rotation (%s) waits for the grace period of login %s to end", why, s.db.previous)
		return nil
	}
	if s.db.revoked != "" || s.db.edited || s.db.password == "" {
		// Looked at again once the revoked login's Secret is written, or
		// the edited or new password is set: a rotation now would keep
		// as previous a password the login does not have yet.
		s.db.wake.at(now.Add(pendingRotation))
		return nil
	}
	fits, err := r.budgetLogins(ctx, s, 2)
	if err != nil {
		return err
	}
	if !fits {
		s.db.waiting = fmt.Sprintf("the credential rotation (%s) waits: two logins of %d connections each do not fit the connection budget of DatabaseCluster %s",
			why, s.maxConnections, s.cluster)
		return nil
	}
	password, err := r.Creds.NewPassword()
	if err != nil {
		return err
	}
	verifier, err := r.Creds.Verifier(password)
	if err != nil {
		return err
	}
	s.db.previous, s.db.previousPassword = s.db.current, s.db.password
	s.db.current, s.db.password, s.db.verifier = s.nextLogin(s.db.current), password, verifier
	s.db.switched = true
	next := rotated(spec, now)
	s.db.rot = &next
	ctrl.LoggerFrom(ctx).Info("Rotating database credentials", "trigger", why, "login", s.db.current, "previousLogin", s.db.previous)
	return nil
}

// budgetGrace makes the budget cover the two logins of a grace period
// that the Secret records but the Organization has not budgeted: one
// adopted from a retained Secret, whose Organization's annotations went
// with it. A budget that does not fit does not shorten the grace period,
// which the application relies on; the condition says so.
func (r *OrganizationReconciler) budgetGrace(ctx context.Context, s *scope) error {
	fits, err := r.budgetLogins(ctx, s, 2)
	if err != nil || fits {
		return err
	}
	s.db.waiting = fmt.Sprintf("the grace period of login %s runs over the connection budget of DatabaseCluster %s: two logins of %d connections each do not fit it",
		s.db.previous, s.cluster, s.maxConnections)
	return nil
}

// settled reports whether the database part has nothing to do but find
// drift: the Organization's database is ready at its generation (whatever
// its storage's state: an S3 outage must not add SQL), was placed before
// this reconcile, adopts nothing, and its login keeps the password the
// Secret holds, with no rotation or end of a grace period due.
func settled(s *scope) bool {
	conds := s.org.Status.Conditions
	return !s.placedNow && s.org.Status.ObservedGeneration == s.org.Generation &&
		meta.IsStatusConditionTrue(conds, tenancyv1alpha1.ConditionDatabaseReady) &&
		s.db.secret != nil && s.db.adoption == "" && !s.db.markedLogins &&
		s.db.password != "" && !s.db.edited && s.db.verifier == "" &&
		!s.db.switched && s.db.revoked == ""
}

// unsettled reports whether the role, database, securing and logins steps
// run: for an Organization not settled, or one its cluster's catalog
// snapshot does not show as those steps would leave it.
func unsettled(s *scope) bool { return !s.db.atRest }

// observeAtRest asks the cluster's catalog snapshot whether a settled
// Organization's role, database, PUBLIC's access and logins are as the
// steps would leave them; then the steps, which would each observe the
// server live and find nothing to do, are skipped. Anything the snapshot
// does not show so, including what it cannot vouch for because the
// operator wrote it since, goes through the steps. A drift made after the
// snapshot is read waits for the next one, Settings.SnapshotMaxAge at most.
func (r *OrganizationReconciler) observeAtRest(ctx context.Context, s *scope) error {
	if r.Settings.SnapshotMaxAge <= 0 {
		return nil
	}
	rest := aurora.Rest{Role: s.roleSpec(), Database: s.database}
	if hasLogins(s) {
		logins := s.loginsSpec()
		rest.Logins = &logins
	}
	s.db.atRest = s.dbs.AtRest(ctx, rest, r.Settings.SnapshotMaxAge)
	return nil
}

// roleSpec is the owner role as the Organization wants it.
func (s *scope) roleSpec() aurora.RoleSpec {
	spec := aurora.RoleSpec{Name: s.role, Marker: s.dbMarker(), ConnLimit: s.maxConnections,
		NoLogin: s.db.current != s.role && s.db.previous != s.role}
	if s.db.current == s.role {
		spec.Verifier = s.db.verifier
	}
	return spec
}

// loginsSpec is the logins as the Secret wants them: its current and
// previous logins active, the current one with its new password if it has
// one, every other login NOLOGIN.
func (s *scope) loginsSpec() aurora.LoginsSpec {
	spec := aurora.LoginsSpec{Owner: s.role, Database: s.database, Marker: s.dbMarker(), ConnLimit: s.maxConnections}
	for _, name := range naming.LoginNames(s.org.Name) {
		l := aurora.Login{Name: name, Active: name == s.db.current || name == s.db.previous}
		if name == s.db.current {
			l.Verifier = s.db.verifier
		}
		spec.Logins = append(spec.Logins, l)
	}
	return spec
}

// ensureRole creates the owner role or brings it to the spec, giving it a
// password when it is the current login and needs one. Once credentials
// have rotated away from it, the owner is NOLOGIN, after the grace period
// in which it is the previous login.
func (r *OrganizationReconciler) ensureRole(ctx context.Context, s *scope) error {
	if err := r.rolePassword(ctx, s); err != nil {
		return fmt.Errorf("ensuring role %s: %w", s.role, err)
	}
	change, err := s.dbs.EnsureRole(ctx, s.roleSpec())
	if err != nil {
		return fmt.Errorf("ensuring role %s: %w", s.role, err)
	}
	if s.db.revoked == s.role && change == aurora.Updated {
		change = aurora.Unchanged // the revocation has an Event of its own
	}
	s.dbNotes.change(change, "role "+s.role)
	if s.db.edited {
		s.dbNotes.add("set login %s's password to the one in Secret %s/%s", s.db.current, s.namespace, s.db.secret.Name)
	}
	return nil
}

// rolePassword sets s.db.verifier when the current login gets a password
// now: for a new Secret, an edited one, a rotation, or a login to create.
// The Secret is written after the login. Only a Secret's own password needs
// a look at the login, to learn whether it must be created.
func (r *OrganizationReconciler) rolePassword(ctx context.Context, s *scope) error {
	if s.db.verifier != "" {
		return nil
	}
	if s.db.password != "" && !s.db.edited {
		info, err := s.dbs.InspectRole(ctx, s.db.current)
		if err != nil || info.Exists {
			return err
		}
	}
	if s.db.password == "" {
		password, err := r.Creds.NewPassword()
		if err != nil {
			return err
		}
		s.db.password = password
	}
	verifier, err := r.Creds.Verifier(s.db.password)
	if err != nil {
		return err
	}
	s.db.verifier = verifier
	return nil
}

func (r *OrganizationReconciler) ensureDatabase(ctx context.Context, s *scope) error {
	change, err := s.dbs.EnsureDatabase(ctx, s.database, s.role, s.dbMarker())
	if err != nil {
		return fmt.Errorf("ensuring database %s: %w", s.database, err)
	}
	s.db.changed = change != aurora.Unchanged
	s.dbNotes.change(change, "database "+s.database)
	return nil
}

// secureDatabase checks schema public inside the database when the
// database is new, the spec changed or DatabaseReady is not True. A resync
// of a Ready Organization checks who may connect, and enters the database
// only if PUBLIC still may, as after an interrupted securing. Inside it the
// tenant is the owner: what it changes there reaches no other tenant, who
// cannot connect.
func (r *OrganizationReconciler) secureDatabase(ctx context.Context, s *scope) error {
	inside := s.db.changed || s.org.Status.ObservedGeneration != s.org.Generation ||
		!meta.IsStatusConditionTrue(s.org.Status.Conditions, tenancyv1alpha1.ConditionDatabaseReady)
	secure := s.dbs.SecureDatabaseAccess
	if inside {
		secure = s.dbs.SecureDatabase
	}
	change, err := secure(ctx, s.database, s.role)
	if err != nil {
		return fmt.Errorf("securing database %s: %w", s.database, err)
	}
	if change != aurora.Unchanged {
		s.dbNotes.add("secured database %s: no access for PUBLIC", s.database)
	}
	return nil
}

func hasExtensions(s *scope) bool { return len(s.org.Spec.Database.Extensions) > 0 }

func (r *OrganizationReconciler) ensureExtensions(ctx context.Context, s *scope) error {
	created, err := s.dbs.EnsureExtensions(ctx, s.database, s.extensions())
	if err != nil {
		return fmt.Errorf("ensuring extensions in %s: %w", s.database, err)
	}
	for _, e := range created {
		s.dbNotes.add("created extension %s in database %s", e, s.database)
	}
	return nil
}

// hasLogins reports whether the organization may have login roles besides
// its owner: its credentials rotate or have rotated. Then every reconcile
// makes sure that the logins the Secret does not hold cannot log in, so a
// rotation interrupted before its Secret was written leaves no password
// that nobody has, and an adopted organization whose Secret was lost
// leaves no login with the lost Secret's password.
func hasLogins(s *scope) bool {
	st := s.org.Status.Credentials
	return rotates(s.org) || s.db.current != s.role || s.db.previous != "" || s.db.revoked != "" || s.db.markedLogins ||
		st.LastRotation != nil || (st.DatabaseLogin != "" && st.DatabaseLogin != s.role)
}

// ensureLogins makes the Secret's current and previous logins work, with
// the current one's new password if it has one, and every other login
// NOLOGIN.
func (r *OrganizationReconciler) ensureLogins(ctx context.Context, s *scope) error {
	changes, err := s.dbs.EnsureLogins(ctx, s.loginsSpec())
	for _, c := range changes {
		switch {
		case c.Revoked && c.Name != s.db.revoked:
			s.dbNotes.add("revoked login %s, which the Secret does not hold", c.Name)
		case c.Change == aurora.Created:
			s.dbNotes.add("created login %s", c.Name)
		}
	}
	if err != nil {
		return fmt.Errorf("ensuring the logins of role %s: %w", s.role, err)
	}
	return nil
}

func (r *OrganizationReconciler) writeDatabaseSecret(ctx context.Context, s *scope) error {
	data := databaseSecretData(s, s.db.current, s.db.password)
	if s.db.previous != "" {
		data["previous-username"], data["previous-password"] = []byte(s.db.previous), []byte(s.db.previousPassword)
	}
	// The verifier carries a new salt each time, so the Secret keeps the
	// one it has until the login's password changes.
	verifier := s.db.verifier
	if verifier == "" && s.db.secret != nil {
		verifier = s.db.secret.Annotations[AnnotationPasswordVerifier]
	}
	annotations := s.db.rot.annotations()
	annotations[AnnotationPasswordVerifier] = verifier
	name := naming.DatabaseSecretName(s.org.Name)
	if s.db.adoption != "" {
		annotations[AnnotationAdoption] = s.db.adoption
	}
	var err error
	if s.db.adoption != "" && s.db.secret != nil {
		err = r.adoptSecret(ctx, s, s.db.secret, data, annotations)
	} else {
		err = r.writeSecret(ctx, s, &s.dbNotes, name, s.db.secret, data, annotations)
	}
	if err != nil {
		return err
	}
	switch {
	case s.db.switched:
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeNormal, tenancyv1alpha1.EventReasonRotated, "Rotate",
			"Switched Secret %s/%s to database login %s; login %s keeps working until %s",
			s.namespace, name, s.db.current, s.db.previous, s.db.rot.validUntil.UTC().Format(time.RFC3339))
	case s.db.revoked != "":
		r.Recorder.Eventf(s.org, nil, corev1.EventTypeNormal, tenancyv1alpha1.EventReasonRotated, "Rotate",
			"Revoked database login %s at the end of its grace period; Secret %s/%s holds login %s only",
			s.db.revoked, s.namespace, name, s.db.current)
	}
	return nil
}

// releaseBudget gives back the second login's budget once no grace period
// runs, after the previous login is revoked and gone from the Secret.
func (r *OrganizationReconciler) releaseBudget(ctx context.Context, s *scope) error {
	if s.db.previous != "" || s.budgetLogins == 1 {
		return nil
	}
	_, err := r.budgetLogins(ctx, s, 1)
	return err
}

// recordDatabase reports the provisioned database on the status.
func (r *OrganizationReconciler) recordDatabase(ctx context.Context, s *scope) error {
	s.org.Status.Database = tenancyv1alpha1.DatabaseStatus{
		Cluster:    s.cluster,
		Name:       s.database,
		Host:       s.tenant.Host,
		Port:       int32(s.tenant.Port),
		Role:       s.role,
		SecretName: naming.DatabaseSecretName(s.org.Name),
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Database provisioned", "database", s.database)
	return nil
}

func databaseSecretData(s *scope, login, password string) map[string][]byte {
	pool := s.org.Spec.Database.Pool
	pool.MaxConnections = s.maxConnections
	pool.MinConnections = min(pool.MinConnections, pool.MaxConnections)
	host, port := s.tenant.Host, strconv.Itoa(s.tenant.Port)
	sslmode := s.tenant.SSLMode
	q := url.Values{}
	q.Set("sslmode", sslmode)
	q.Set("pool_min_conns", strconv.Itoa(int(pool.MinConnections)))
	q.Set("pool_max_conns", strconv.Itoa(int(pool.MaxConnections)))
	uri := url.URL{
		Scheme:   "postgresql",
		User:     url.UserPassword(login, password),
		Host:     net.JoinHostPort(host, port),
		Path:     "/" + s.database,
		RawQuery: q.Encode(),
	}
	return map[string][]byte{
		"host":          []byte(host),
		"port":          []byte(port),
		"dbname":        []byte(s.database),
		"username":      []byte(login),
		"password":      []byte(password),
		"sslmode":       []byte(sslmode),
		"uri":           []byte(uri.String()),
		"jdbc-url":      []byte(fmt.Sprintf("jdbc:postgresql://%s/%s?sslmode=%s", net.JoinHostPort(host, port), s.database, url.QueryEscape(sslmode))),
		"pool-min-size": []byte(strconv.Itoa(int(pool.MinConnections))),
		"pool-max-size": []byte(strconv.Itoa(int(pool.MaxConnections))),
	}
}
