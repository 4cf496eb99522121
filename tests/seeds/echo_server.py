# 002 §3.2 链接循环加通信循环版, server. Binds 127.0.0.1 port 0 and prints the port.
import socket
server = socket.socket()
# 当操作系统没来得及释放端口时，再次启动服务端就会报错，这时候我们就需要设置这条参数
server.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
server.bind(("127.0.0.1",0))
server.listen(5) # 限制请求数
print(server.getsockname()[1], flush=True)  # sockit: tell the test the port

while True:#链接循环
    conn,client_addr = server.accept() # conn：三次握手建立的双向连接 addr：客户端地址和ip
    while True:# 通信循环
        try:
            data = conn.recv(1024)
            if len(data) == 0:break
            print("接收到消息",data)
            conn.send(data.upper())
        except ConnectionResetError:break
    conn.close()
server.close()
