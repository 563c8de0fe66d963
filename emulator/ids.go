package emulator

import (
	"math/rand/v2"
)

// crockford is the ULID alphabet; its order matches byte order, so ULID strings
// sort like the 128-bit values they encode.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// id128 is a 128-bit identifier: 48 bits of milliseconds, then 80 bits that are
// random or, within one millisecond, incremented (monotonic).
type id128 struct{ hi, lo uint64 }

// idGen makes identifiers that ascend strictly with the time it is given.
type idGen struct {
	rng    *rand.Rand
	lastMS int64
	last   id128
}

// next returns an identifier for millisecond ms, greater than every earlier one.
func (g *idGen) next(ms int64) id128 {
	if ms <= g.lastMS && (g.last != id128{}) {
		// Same (or earlier) millisecond: increment the 80 random bits.
		id := g.last
		// Steps are multiples of 64 so that the UUID layout, which drops
		// the 6 lowest bits, stays unique.
		id.lo += (1 + uint64(g.rng.IntN(1<<10))) << 6
		if id.lo < g.last.lo {
			id.hi++
		}
		g.last = id
		return id
	}
	g.lastMS = ms
	// Keep the top random bits small so that increments within one
	// millisecond never overflow into the timestamp.
	g.last = id128{hi: uint64(ms)<<16 | uint64(g.rng.IntN(1<<15)), lo: g.rng.Uint64()}
	return g.last
}

// appendULID appends the 26-character Crockford base-32 form of id.
func appendULID(b []byte, id id128) []byte {
	var out [26]byte
	// 128 bits in 26 characters of 5 bits: the first character holds 3 bits.
	hi, lo := id.hi, id.lo
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return append(b, out[:]...)
}

// ulid returns the ULID string of id.
func ulid(id id128) string { return string(appendULID(nil, id)) }

const hexDigits = "0123456789abcdef"

// appendUUIDv7 appends id in the layout of a version 7 UUID. It keeps id's
// order: the version and variant bits are inserted, the other bits shifted.
func appendUUIDv7(b []byte, id id128) []byte {
	// 48 bits time, 4 bits version (7), 12 bits, 2 bits variant (10), 62 bits.
	ms := id.hi >> 16
	randA := (id.hi >> 4) & 0xfff
	// 66 remaining bits: 4 low bits of hi and 64 of lo; keep the top 62.
	randB := (id.hi&0xf)<<58 | id.lo>>6
	var raw [16]byte
	for i := 0; i < 6; i++ {
		raw[i] = byte(ms >> (40 - 8*i))
	}
	raw[6] = 0x70 | byte(randA>>8)
	raw[7] = byte(randA)
	raw[8] = 0x80 | byte(randB>>56)&0x3f
	for i := 9; i < 16; i++ {
		raw[i] = byte(randB >> (56 - 8*(i-8)))
	}
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

// uuidString returns a random version 4 UUID drawn from rng.
func uuidString(rng *rand.Rand) string {
	var raw [16]byte
	for i := range raw {
		raw[i] = byte(rng.UintN(256))
	}
	raw[6] = raw[6]&0x0f | 0x40
	raw[8] = raw[8]&0x3f | 0x80
	b := make([]byte, 0, 36)
	for i, c := range raw {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

func newRand(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}
