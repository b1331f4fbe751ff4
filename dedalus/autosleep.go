package dedalus

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultAutosleep is the platform's idle window when a machine is created without one.
const DefaultAutosleep = 5 * time.Minute

// AutosleepNever disables autosleep.
const AutosleepNever = "never"

var autosleepUnits = map[byte]time.Duration{
	'w': 7 * 24 * time.Hour,
	'd': 24 * time.Hour,
	'h': time.Hour,
	'm': time.Minute,
	's': time.Second,
}

// ParseAutosleep parses the autosleep field of a machine request: a duration
// made of whole-number parts with units w, d, h, m, s ("30s", "5m", "7d3h4s",
// "1w3d"), raw seconds ("1800"), or "never". It returns 0 for "never".
// Units must appear largest first, each at most once, as the platform requires.
func ParseAutosleep(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, fmt.Errorf("autosleep %q: empty", s)
	}
	if strings.EqualFold(in, AutosleepNever) {
		return 0, nil
	}
	if n, err := strconv.ParseInt(in, 10, 64); err == nil {
		if n <= 0 {
			return 0, fmt.Errorf("autosleep %q: seconds must be positive (use %q to disable)", s, AutosleepNever)
		}
		return time.Duration(n) * time.Second, nil
	}
	total, err := parseAutosleepParts(s, in)
	if err != nil {
		return 0, err
	}
	if total <= 0 {
		return 0, fmt.Errorf("autosleep %q: must be positive (use %q to disable)", s, AutosleepNever)
	}
	return total, nil
}

// parseAutosleepParts adds up in's parts ("7d3h4s"), largest unit first;
// errors quote s, the setting as given.
func parseAutosleepParts(s, in string) (time.Duration, error) {
	const order = "wdhms"
	var total time.Duration
	last := -1
	rest := in
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("autosleep %q: want parts like 30s, 5m, 2h, 7d, 1w, raw seconds or %q", s, AutosleepNever)
		}
		unit := rest[i]
		pos := strings.IndexByte(order, unit)
		if pos < 0 {
			return 0, fmt.Errorf("autosleep %q: unknown unit %q (use w, d, h, m, s)", s, string(unit))
		}
		if pos <= last {
			return 0, fmt.Errorf("autosleep %q: units must be in order w, d, h, m, s and appear once", s)
		}
		last = pos
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil || n > 1<<20 {
			return 0, fmt.Errorf("autosleep %q: number %q out of range", s, rest[:i])
		}
		total += time.Duration(n) * autosleepUnits[unit]
		rest = rest[i+1:]
	}
	return total, nil
}

// FormatAutosleep renders d in the platform's autosleep syntax ("never" for 0).
func FormatAutosleep(d time.Duration) string {
	if d <= 0 {
		return AutosleepNever
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}
