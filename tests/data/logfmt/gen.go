// Writes the same log records twice with Go's log/slog: slog.txt through the text handler
// (logfmt) and slog.jsonl through the JSON handler. The JSON lines are the independent answer
// for what the `key_value` processor must read out of each text line
// (src/processors/key_value.rs). Run: go run gen.go (from this folder).
package main

import (
	"log/slog"
	"math/rand"
	"os"
	"strings"
)

// Runes slog must quote or escape (space, =, quotes, backslash, control and invalid-looking
// characters) beside plain ones.
var palette = []rune("abcXYZ019_-/:.,;@ =\"'\\\t\n\r\x01\x7féü中😀\u200b\u2028\u0085[]{}()")

func word(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteRune(palette[r.Intn(len(palette))])
	}
	return b.String()
}

func key(r *rand.Rand, i int) string {
	// Keys have no dot (a dotted key nests, as a slog group does) and are unique per record.
	k := strings.ReplaceAll(word(r, 1+r.Intn(6)), ".", "")
	return k + "_" + string(rune('a'+i))
}

func main() {
	drop := func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}
	txt, _ := os.Create("slog.txt")
	jsn, _ := os.Create("slog.jsonl")
	text := slog.New(slog.NewTextHandler(txt, &slog.HandlerOptions{ReplaceAttr: drop, Level: slog.LevelDebug}))
	json := slog.New(slog.NewJSONHandler(jsn, &slog.HandlerOptions{ReplaceAttr: drop, Level: slog.LevelDebug}))
	r := rand.New(rand.NewSource(7))
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	for n := 0; n < 400; n++ {
		var attrs []any
		grouped := false
		for i := 0; i < r.Intn(7); i++ {
			switch r.Intn(5) {
			case 0:
				attrs = append(attrs, slog.Int(key(r, i), r.Intn(100000)-500))
			case 1:
				attrs = append(attrs, slog.Bool(key(r, i), r.Intn(2) == 0))
			case 2:
				if grouped {
					continue
				}
				grouped = true
				attrs = append(attrs, slog.Group("req", slog.String("method", word(r, 3)), slog.Int("status", 200+r.Intn(400))))
			default:
				attrs = append(attrs, slog.String(key(r, i), word(r, r.Intn(12))))
			}
		}
		msg := word(r, r.Intn(20))
		level := levels[r.Intn(len(levels))]
		text.Log(nil, level, msg, attrs...)
		json.Log(nil, level, msg, attrs...)
	}
	txt.Close()
	jsn.Close()
}
