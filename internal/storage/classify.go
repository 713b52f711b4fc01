package storage

import (
	"errors"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/orgforge/orgforge/internal/retry"
)

// throttledCodes are the error codes S3, IAM and S3-compatible servers use
// to ask for fewer requests, whatever HTTP status carries them (S3 sends
// SlowDown as a 503).
var throttledCodes = map[string]bool{
	"SlowDown":                               true,
	"Throttling":                             true,
	"ThrottlingException":                    true,
	"ThrottledException":                     true,
	"RequestThrottled":                       true,
	"RequestThrottledException":              true,
	"RequestLimitExceeded":                   true,
	"TooManyRequestsException":               true,
	"ProvisionedThroughputExceededException": true,
	"BandwidthLimitExceeded":                 true,
}

// permissionCodes are refusals of the caller's identity or rights.
var permissionCodes = map[string]bool{
	"AccessDenied":                true,
	"AccessDeniedException":       true,
	"AllAccessDisabled":           true,
	"InvalidAccessKeyId":          true,
	"InvalidClientTokenId":        true,
	"SignatureDoesNotMatch":       true,
	"ExpiredToken":                true,
	"ExpiredTokenException":       true,
	"InvalidToken":                true,
	"UnrecognizedClientException": true,
}

// unavailableCodes are server-side failures sent, by some servers, with a
// status that would not tell so.
var unavailableCodes = map[string]bool{
	"InternalError":      true,
	"OperationAborted":   true,
	"InternalFailure":    true,
	"ServiceFailure":     true,
	"ServiceUnavailable": true,
}

// Classify tells the class of an error from S3 or IAM, for retry.Do and for
// the reasons of conditions: throttling and 5xx are transient, refusals and
// other 4xx are not, and anything without a response is left to
// retry.NetworkClass.
func Classify(err error) retry.Class {
	switch {
	case err == nil:
		return retry.ClassNone
	case errors.Is(err, ErrInvalid):
		return retry.ClassInvalid
	case errors.Is(err, ErrConflict):
		return retry.ClassConflict
	}

	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		switch {
		case throttledCodes[code]:
			return retry.ClassThrottled
		case permissionCodes[code]:
			return retry.ClassPermission
		case unavailableCodes[code]:
			return retry.ClassUnavailable
		case code == "RequestTimeout":
			// S3's 400 for a connection that stalled mid-request.
			return retry.ClassNetwork
		}
	}

	switch status := statusCode(err); {
	case status == 0:
		// No response: the request never reached a server, or the answer
		// never came back.
	case status == http.StatusTooManyRequests:
		return retry.ClassThrottled
	case status >= 500:
		return retry.ClassUnavailable
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return retry.ClassPermission
	case status == http.StatusConflict:
		return retry.ClassConflict
	case status == http.StatusRequestTimeout:
		return retry.ClassNetwork
	case status >= 400:
		return retry.ClassInvalid
	}

	return retry.NetworkClass(err)
}

// statusCode is the HTTP status of the response err came with, or 0.
func statusCode(err error) int {
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		return respErr.HTTPStatusCode()
	}
	return 0
}

// errorCode is the S3 or IAM error code err carries, or "".
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
