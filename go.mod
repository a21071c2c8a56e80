module github.com/nagare/nagare

go 1.26
