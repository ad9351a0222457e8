package scale

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standby is AZP_SCALE_STANDBY: a fixed number of idle agents, or a weekly schedule in a time
// zone such as `mon-fri 07:00-19:00=3, sat 09:00-13:00=1` (unlisted times: 0; overlapping
// entries: the largest number).
type Standby struct {
	fixed   int
	entries []standbyEntry
	loc     *time.Location
}

type standbyEntry struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes of the day, end exclusive (24:00 = 1440)
	n          int
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseStandby parses the setting; loc is AZP_SCALE_TIMEZONE (nil: UTC).
func ParseStandby(s string, loc *time.Location) (Standby, error) {
	if loc == nil {
		loc = time.UTC
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return Standby{loc: loc}, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 {
			return Standby{}, fmt.Errorf("%d: a number of idle agents cannot be negative", n)
		}
		return Standby{fixed: n, loc: loc}, nil
	}
	sb := Standby{loc: loc}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		e, err := parseEntry(item)
		if err != nil {
			return Standby{}, fmt.Errorf("%q: %w (want a number, or entries like `mon-fri 07:00-19:00=3, sat 09:00-13:00=1`)", item, err)
		}
		sb.entries = append(sb.entries, e)
	}
	return sb, nil
}

func parseEntry(item string) (standbyEntry, error) {
	var e standbyEntry
	spec, count, ok := strings.Cut(item, "=")
	if !ok {
		return e, fmt.Errorf("missing =N")
	}
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 0 {
		return e, fmt.Errorf("%q is not a number of agents", strings.TrimSpace(count))
	}
	e.n = n
	f := strings.Fields(spec)
	if len(f) != 2 {
		return e, fmt.Errorf("want days and a time range")
	}
	first, last, isRange := strings.Cut(strings.ToLower(f[0]), "-")
	d1, ok1 := dayNames[first]
	d2, ok2 := d1, ok1
	if isRange {
		d2, ok2 = dayNames[last]
	}
	if !ok1 || !ok2 {
		return e, fmt.Errorf("days %q: use mon, tue, wed, thu, fri, sat, sun or a range like mon-fri", f[0])
	}
	for d := d1; ; d = (d + 1) % 7 {
		e.days[d] = true
		if d == d2 {
			break
		}
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return e, fmt.Errorf("time range %q: want HH:MM-HH:MM", f[1])
	}
	if e.start, err = clock(from); err == nil {
		e.end, err = clock(to)
	}
	if err != nil {
		return e, err
	}
	if e.end <= e.start {
		return e, fmt.Errorf("time range %q ends before it starts (write a range past midnight as two entries)", f[1])
	}
	return e, nil
}

func clock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("time %q: want HH:MM (00:00 to 24:00)", s)
	}
	return hh*60 + mm, nil
}

// At is the number of idle agents wanted at t.
func (s Standby) At(t time.Time) int {
	if len(s.entries) == 0 {
		return s.fixed
	}
	lt := t.In(s.loc)
	mins := lt.Hour()*60 + lt.Minute()
	best := 0
	for _, e := range s.entries {
		if e.days[lt.Weekday()] && mins >= e.start && mins < e.end && e.n > best {
			best = e.n
		}
	}
	return best
}

// Max is the largest number the setting ever asks for.
func (s Standby) Max() int {
	best := s.fixed
	for _, e := range s.entries {
		best = max(best, e.n)
	}
	return best
}
