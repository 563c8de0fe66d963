// Package jsonscan walks JSON that encoding/json has already validated
// (json.Valid): it finds the members of an object and the elements of an
// array as substrings of the document, without building a generic tree, so
// that extracting a few keys costs no reflection and almost no allocation.
// Every function assumes valid JSON; on invalid input it returns garbage but
// never panics or loops (mapping's FuzzScan checks both).
package jsonscan

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Kind names the kind of the JSON value starting at v[0], for messages.
func Kind(v string) string {
	if v == "" {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// TrimSpace trims JSON whitespace (not Unicode's) from both ends of s.
func TrimSpace(s string) string {
	i, j := 0, len(s)
	for i < j && isSpace(s[i]) {
		i++
	}
	for j > i && isSpace(s[j-1]) {
		j--
	}
	return s[i:j]
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// skipString returns the index just after the string whose opening quote is at s[i].
func skipString(s string, i int) int {
	i++
	for i < len(s) {
		switch s[i] {
		case '\\':
			i += 2
			continue
		case '"':
			return i + 1
		}
		i++
	}
	return len(s)
}

// SkipValue returns the index just after the value starting at s[i].
func SkipValue(s string, i int) int {
	if i >= len(s) {
		return len(s)
	}
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				i = skipString(s, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(s)
	}
	for i < len(s) {
		switch c := s[i]; {
		case c == ',' || c == '}' || c == ']' || isSpace(c):
			return i
		}
		i++
	}
	return len(s)
}

// Unquote returns the Go string of the JSON string literal q (quotes
// included). Literals without escapes and with valid UTF-8 are returned as a
// substring of q, without copying; others are decoded by encoding/json.
func Unquote(q string) string {
	if len(q) < 2 {
		return ""
	}
	body := q[1 : len(q)-1]
	if strings.IndexByte(body, '\\') < 0 && utf8.ValidString(body) {
		return body
	}
	var out string
	if err := json.Unmarshal([]byte(q), &out); err != nil {
		return body
	}
	return out
}

// EachMember calls fn with the unquoted key and the raw value of every member
// of the JSON object obj, in document order. obj must start with '{'.
func EachMember(obj string, fn func(key, val string)) {
	i := skipSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		end := skipString(obj, i)
		key := Unquote(obj[i:end])
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		i = skipSpace(obj, i+1)
		vend := SkipValue(obj, i)
		if vend <= i {
			return
		}
		fn(key, obj[i:vend])
		i = skipSpace(obj, vend)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
		i = skipSpace(obj, i+1)
	}
}

// EachElement calls fn with the raw value of every element of the JSON array
// arr, in order. arr must start with '['.
func EachElement(arr string, fn func(val string)) {
	i := skipSpace(arr, 1)
	for i < len(arr) && arr[i] != ']' {
		vend := SkipValue(arr, i)
		if vend <= i {
			return
		}
		fn(arr[i:vend])
		i = skipSpace(arr, vend)
		if i >= len(arr) || arr[i] != ',' {
			return
		}
		i = skipSpace(arr, i+1)
	}
}
