# 002 §3.2 链接循环加通信循环版, client. Usage: echo_client.py HOST PORT
import socket
import sys

client = socket.socket()
client.connect((sys.argv[1], int(sys.argv[2])))


while True:# 通信循环
    try:
        msg = input(">>：").strip()
    except EOFError:  # sockit: stdin ended, the test is over
        break
    if(len(msg) == 0):continue # 如果客户端发送空，什么都没有，TCP又没有报头，所以服务端是收不到的，必须要处理下
    client.send(msg.encode("utf-8"))
    data = client.recv(1024)
    print(data)

client.close()
