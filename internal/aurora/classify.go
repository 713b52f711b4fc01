package aurora

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/orgforge/orgforge/internal/retry"
)

// Sentinel errors, for the controller to branch on with errors.Is. The
// errors that wrap them carry a message meant for the Organization's status.
var (
	// ErrConflict is a database or role name taken by something orgforge
	// did not create for this Organization. Nothing was changed.
	ErrConflict = errors.New("name taken by an object orgforge does not manage for this Organization")
	// ErrInvalid is a request the server can never satisfy as it stands,
	// such as an extension it does not offer or a name too long for it.
	ErrInvalid = errors.New("invalid request")
	// ErrPrivilege is an admin login without the rights orgforge needs.
	ErrPrivilege = errors.New("insufficient privilege")
)

// Classify tells the class of an error returned by this package, so that
// retries, condition reasons and metrics agree on it. Server shutdowns,
// overload and lost connections are transient; refusals for lack of rights
// and requests the server rejects as malformed are not.
func Classify(err error) retry.Class {
	if err == nil {
		return retry.ClassNone
	}
	switch {
	case errors.Is(err, ErrConflict):
		return retry.ClassConflict
	case errors.Is(err, ErrInvalid):
		return retry.ClassInvalid
	case errors.Is(err, ErrPrivilege):
		return retry.ClassPermission
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return classifyCode(pgErr.Code)
	}
	return retry.NetworkClass(err)
}

// classifyCode classifies a SQLSTATE.
func classifyCode(code string) retry.Class {
	switch code {
	case "57P01", // admin_shutdown
		"57P02", // crash_shutdown
		"57P03", // cannot_connect_now: starting up or shutting down
		"53300", // too_many_connections
		"53000", // insufficient_resources
		"40001", // serialization_failure
		"40P01": // deadlock_detected
		return retry.ClassUnavailable
	case "42501": // insufficient_privilege
		return retry.ClassPermission
	}
	switch {
	case strings.HasPrefix(code, "08"): // connection exception
		return retry.ClassNetwork
	case strings.HasPrefix(code, "28"): // invalid authorization: wrong password, no pg_hba entry
		return retry.ClassPermission
	case strings.HasPrefix(code, "42"), // syntax error or access rule violation
		strings.HasPrefix(code, "22"), // data exception
		strings.HasPrefix(code, "3D"), // invalid catalog name: no such database
		strings.HasPrefix(code, "0A"): // feature not supported
		return retry.ClassInvalid
	}
	return retry.ClassOther
}
