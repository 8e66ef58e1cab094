// The runtime floor of a ping responder: what a Go process and a Python asyncio process each take to answer
// a round that looks like `pilotctl ping` to the responder (two exchanges of a small AES-256-GCM frame: the
// "SYN" and the "data"), with the process idle between rounds. Only the cipher and the socket, no protocol.
//
//	floor serve 127.0.0.1:PORT          the Go responder
//	floor probe GAP_MS ROUNDS ADDR...   rounds against each ADDR in turn; prints "ADDR p50_us" per line
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"time"
)

func aead() cipher.AEAD {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		panic(err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return g
}

func serve(addr string) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	g := aead()
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if n < 12 {
			continue
		}
		plain, err := g.Open(nil, buf[:12], buf[12:n], nil)
		if err != nil {
			continue
		}
		pc.WriteTo(g.Seal(append([]byte{}, buf[:12]...), buf[:12], plain, nil), from)
	}
}

func exchange(c net.Conn, g cipher.AEAD, seq uint64) bool {
	nonce := make([]byte, 12)
	for i := 0; i < 8; i++ {
		nonce[4+i] = byte(seq >> (8 * i))
	}
	if _, err := c.Write(g.Seal(append([]byte{}, nonce...), nonce, make([]byte, 48), nil)); err != nil {
		return false
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2048)
	_, err := c.Read(buf)
	return err == nil
}

func probe(gap time.Duration, rounds int, addrs []string) {
	g := aead()
	conns := make([]net.Conn, len(addrs))
	for i, a := range addrs {
		c, err := net.Dial("udp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		conns[i] = c
	}
	rtts := make([][]float64, len(addrs))
	var seq uint64
	for r := 0; r < rounds; r++ {
		for i, c := range conns {
			time.Sleep(gap)
			t0 := time.Now()
			seq += 2
			if exchange(c, g, seq) && exchange(c, g, seq+1) {
				rtts[i] = append(rtts[i], float64(time.Since(t0).Nanoseconds())/1000)
			}
		}
	}
	for i, a := range addrs {
		sort.Float64s(rtts[i])
		if len(rtts[i]) == 0 {
			fmt.Printf("%s nan\n", a)
			continue
		}
		fmt.Printf("%s %.1f\n", a, rtts[i][len(rtts[i])/2])
	}
}

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "serve" {
		serve(os.Args[2])
		return
	}
	if len(os.Args) >= 5 && os.Args[1] == "probe" {
		gap, err1 := strconv.Atoi(os.Args[2])
		rounds, err2 := strconv.Atoi(os.Args[3])
		if err1 == nil && err2 == nil {
			probe(time.Duration(gap)*time.Millisecond, rounds, os.Args[4:])
			return
		}
	}
	fmt.Fprintln(os.Stderr, "usage: floor serve ADDR | floor probe GAP_MS ROUNDS ADDR...")
	os.Exit(2)
}
