package pools

import (
	"fmt"
	"strconv"
	"strings"
)

// cronField is one field of a 5-field cron expression.
type cronField struct {
	name     string
	min, max int
	names    map[string]int // JAN.., SUN.. (upper case)
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{
		"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
		"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}},
	// 0 and 7 are both Sunday, as in Vixie cron and Temporal.
	{name: "day of week", min: 0, max: 7, names: map[string]int{
		"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}},
}

// ValidateCron checks a standard 5-field cron expression (minute hour
// day-of-month month day-of-week, evaluated in UTC): each field is * or a
// comma-separated list of values and ranges (a-b), each optionally with a
// step (*/15, 8-18/2); months and weekdays may be named (JAN, MON-FRI).
// It accepts a subset of what Temporal Schedules accept, so a valid
// expression can be handed to a ScheduleSpec's CronExpressions unchanged.
func ValidateCron(expr string) error {
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return fmt.Errorf("cron %q: want 5 fields (minute hour day-of-month month day-of-week), got %d", expr, len(fields))
	}
	for i, f := range fields {
		if err := cronFields[i].check(f); err != nil {
			return fmt.Errorf("cron %q: %s: %w", expr, cronFields[i].name, err)
		}
	}
	return nil
}

func (cf cronField) check(field string) error {
	for item := range strings.SplitSeq(field, ",") {
		if item == "" {
			return fmt.Errorf("%q has an empty list item", field)
		}
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := number(step)
			if err != nil || n < 1 || n > cf.max {
				return fmt.Errorf("step %q must be a number between 1 and %d", step, cf.max)
			}
		}
		if rng == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := cf.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			continue
		}
		b, err := cf.value(hi)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("range %q runs backwards", rng)
		}
	}
	return nil
}

func (cf cronField) value(s string) (int, error) {
	if v, ok := cf.names[strings.ToUpper(s)]; ok {
		return v, nil
	}
	n, err := number(s)
	if err != nil || n < cf.min || n > cf.max {
		return 0, fmt.Errorf("%q is not a value between %d and %d", s, cf.min, cf.max)
	}
	return n, nil
}

// number parses plain decimal digits (no sign).
func number(s string) (int, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || len(s) > 4 {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return strconv.Atoi(s)
}
