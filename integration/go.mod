module github.com/layerbridge/layerbridge/integration

go 1.26.8

require github.com/layerbridge/layerbridge v0.0.0

replace github.com/layerbridge/layerbridge => ../
