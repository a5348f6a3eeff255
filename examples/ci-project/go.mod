module example.com/ciproject

go 1.22
