package controllers

import (
	"hash/fnv"
	"time"
)

// checkMinGapShare is the shortest wait before a drift check, as a share
// of the resync period: a tenth. A reconcile that ran just before its
// organization's phase point (an edit, a restart) is not checked again a
// moment later, but at the point after that.
const checkMinGapShare = 10

// checkPhase is where in every resync period organization uid's drift
// checks fall: fixed for the organization, and spread evenly over the
// period between organizations, as their UIDs are random.
func checkPhase(uid string, resync time.Duration) time.Duration {
	if resync <= 0 {
		return 0
	}
	return time.Duration(hashUID(uid) % uint64(resync))
}

// hashUID spreads organizations' UIDs evenly over the uint64s, to place
// their periodic work at different times.
func hashUID(uid string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	return h.Sum64()
}

// nextCheck is how long after now organization uid's next drift check is
// due: at the next point of its phase (checkPhase) at least a tenth of the
// period away, so between resync/10 and resync*11/10. Checks paced by it
// alone fall one period apart, and those of N organizations at N/resync
// per second whenever they started: the pass after a restart, which
// reconciles every organization at once, is followed by checks spread over
// the period, not by the same burst one period later.
func nextCheck(uid string, now time.Time, resync time.Duration) time.Duration {
	if resync <= 0 {
		return resync
	}
	since := (now.UnixNano() - int64(checkPhase(uid, resync))) % int64(resync)
	if since < 0 {
		since += int64(resync)
	}
	after := resync - time.Duration(since)
	if after < resync/checkMinGapShare {
		after += resync
	}
	return after
}
